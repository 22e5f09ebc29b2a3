"""Track events: what a message asks for, parsed from untrusted bytes."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from klio_dagster.core.tracks import validate_track_id
from klio_dagster.errors import InvalidMessage, KlioError

#: Larger payloads are dead-lettered unread.
MAX_MESSAGE_BYTES = 64 * 1024
#: Deeper JSON is dead-lettered unparsed (an event needs 2 levels; Python's parser recurses per level).
MAX_JSON_DEPTH = 8


def json_depth(data: bytes) -> int:
    """The deepest nesting of ``[`` and ``{`` in a JSON text, ignoring brackets inside strings.

    One pass over the bytes and no recursion, so it is safe on any input.
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


@dataclass(frozen=True)
class TrackEvent:
    """One track asked for.

    ``features`` empty means top-down: the whole graph below the track's
    source. Non-empty means bottom-up: those features and only their
    missing ancestors.
    """

    track_id: str
    uri: str | None = None
    features: tuple[str, ...] = ()
    force: bool = False
    ping: bool = False

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"track_id": self.track_id, "features": list(self.features), "force": self.force, "ping": self.ping}
        if self.uri:
            body["uri"] = self.uri
        return json.dumps(body).encode()


_FIELDS = {"track_id": str, "uri": str, "features": list, "force": bool, "ping": bool}


def load_json(data: bytes) -> Any:
    """Untrusted JSON, size and depth checked before parsing; :class:`InvalidMessage` with the reason otherwise."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message is {len(data)} bytes, more than the {MAX_MESSAGE_BYTES} allowed")
    if (depth := json_depth(data)) > MAX_JSON_DEPTH:
        raise InvalidMessage(f"JSON nested {depth} levels deep, more than the {MAX_JSON_DEPTH} allowed")
    try:
        return json.loads(data)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of thousands of digits
        raise InvalidMessage(f"not valid JSON: {exc}") from None


def parse_json_event(data: bytes, known_features: Collection[str]) -> TrackEvent:
    """Parse a JSON message ``{"track_id", "uri"?, "features"?, "force"?, "ping"?}``."""
    body = load_json(data)
    if not isinstance(body, dict):
        raise InvalidMessage(f"expected a JSON object, got {type(body).__name__}")
    for key, value in body.items():
        expected = _FIELDS.get(key)
        if expected is None:
            raise InvalidMessage(f"unknown field {key!r}: allowed fields are {sorted(_FIELDS)}")
        if value is not None and not isinstance(value, expected):
            raise InvalidMessage(f"field {key!r} must be a {expected.__name__}, got {type(value).__name__}")
    if "track_id" not in body:
        raise InvalidMessage("missing field 'track_id'")
    try:
        track_id = validate_track_id(body["track_id"])
    except KlioError as exc:
        raise InvalidMessage(str(exc)) from None
    features = tuple(body.get("features") or ())
    unknown = [f for f in features if not isinstance(f, str) or f not in known_features]
    if unknown:
        raise InvalidMessage(f"unknown feature(s) {unknown}: known features are {sorted(known_features)}")
    return TrackEvent(track_id, body.get("uri"), features, bool(body.get("force")), bool(body.get("ping")))
