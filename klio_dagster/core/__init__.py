"""The Dagster-free core: track IDs, features, formats, audio, and the per-track computation.

This is what Beam and Dataflow workers import; nothing here imports Dagster
(tests/test_layers.py checks it). Importing it makes numba's on-disk cache
safe for processes compiling at the same time (see :mod:`.numba_cache`), so
import klio_dagster before librosa in a module that compiles at import time.
"""

from klio_dagster.core.numba_cache import make_numba_cache_process_safe

make_numba_cache_process_safe()
