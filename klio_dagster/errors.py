"""klio-dagster's errors: one hierarchy, each message says what went wrong and what to do.

Every error a user can cause is a :class:`KlioError`; the CLI reports one as a
single line and exits 2 (nothing was written). Errors of bad values are also
``ValueError`` so that plain Python callers can catch them as such.
"""


class KlioError(Exception):
    """Base class of klio-dagster's own errors."""


class InvalidTrackId(KlioError, ValueError):
    """A track ID outside the allowed alphabet or length."""


class InvalidRequest(KlioError, ValueError):
    """A request that names unknown features, no tracks, or a bad option."""


class FeatureGraphError(KlioError, ValueError):
    """A feature graph that cannot be built: a duplicate name, an unknown input, a cycle, an unknown feature."""


class UnknownFormat(KlioError, ValueError):
    """An output format that is not registered."""


class InvalidSourceUri(KlioError, ValueError):
    """A source location that klio-dagster cannot read (an unsupported scheme)."""


class SourceNotAllowed(InvalidSourceUri):
    """A source named by an event outside the allowed roots, or not a regular file, or too large."""


class InvalidMessage(KlioError, ValueError):
    """A message that cannot be turned into a track event; the reason says why (it is dead-lettered)."""


class LocationError(KlioError):
    """A code location (``KLIO_DEFINITIONS``) that is missing, broken, or has no feature graph."""


class ConfigurationError(KlioError, ValueError):
    """A deployment setting that cannot work (an unknown runner or profile, a store the runner cannot reach)."""


class AudioDecodeError(KlioError):
    """A source file that is missing, empty or cannot be decoded."""


class TrackTooLong(AudioDecodeError):
    """A source longer than the configured maximum duration: that track fails alone."""


class MissingInputError(KlioError):
    """A feature's input is neither recorded and stored nor computed in the same run."""


class InputMismatchError(MissingInputError):
    """The stored bytes of a feature's input are not the output that lineage recorded for it."""


class WorkerLost(KlioError, RuntimeError):
    """An executor's worker process died (a crash in native code, the OOM killer): its tracks have no result."""


class StoreError(KlioError):
    """A feature store URI or object that cannot be used."""


class PubSubUnavailable(KlioError, RuntimeError):
    """Pub/Sub could not be reached: the tick fails, nothing is acknowledged, the next tick retries."""
