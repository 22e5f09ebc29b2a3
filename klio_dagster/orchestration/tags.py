"""klio-dagster's own run tags, event tags and metadata keys, and its default names.

Dagster's own tag names (data version, code version, priority, backfill) are
in :mod:`klio_dagster.orchestration.compat`.
"""

#: Default name of a feature graph's multi-asset: its op name in run config, and its job's prefix.
FEATURES_ASSET_NAME = "klio_features"

#: Observation tag and metadata key of a failed (feature, track), with its value.
STATUS_TAG = "klio/status"
FAILED = "failed"
#: Observation tag of a pinged (feature, track): the planner's decision, ``compute`` or ``skip``.
PING_TAG = "klio/ping"

#: Run tag: which of Klio's modes a run serves.
MODE_TAG = "klio/mode"
TOP_DOWN = "top-down"
BOTTOM_UP = "bottom-up"
#: Run tag: what asked for the run (``cli``, ``local-queue``, ``pubsub``, ``top-down:<parents>``).
SOURCE_TAG = "klio/source"
#: Run tag: how many tracks the run was asked for.
TRACKS_TAG = "klio/tracks"
#: Run tag: the lane of a run (``live`` for events), see :mod:`klio_dagster.events.priority`.
LANE_TAG = "klio/lane"

#: Asset metadata: the output format, and the sample rate a feature decodes ``audio`` at.
FORMAT_METADATA = "klio/format"
SAMPLE_RATE_METADATA = "klio/sample_rate_hz"
#: Run tag: the process executing the run (``host.pid.start-time``), so a dead one can be told apart.
OWNER_TAG = "klio/owner"
