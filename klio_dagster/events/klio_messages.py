"""Klio's ``KlioMessage`` (v1 and v2) and GCS upload notifications as track events.

Klio job names map to feature assets: a job ``"{gcp_project}-{job_name}"``
or ``"{job_name}"`` found in ``job_features`` becomes that feature; any other
job name is taken as a feature name. How Klio's routing maps to klio-dagster:

- v1, ``downstream`` empty: for everyone, top-down. ``downstream`` set: those
  jobs' features, bottom-up.
- v2, no recipients: Klio drops it; here it is rejected with that reason.
  ``anyone``: top-down. ``limited``: the recipients' features, bottom-up;
  ``trigger_children_of``: that feature and everything below it.
- ``force`` and ``ping`` carry over as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from google.protobuf.message import DecodeError

from klio_dagster.core.graph import FeatureGraph
from klio_dagster.core.tracks import track_id_from_path, validate_track_id
from klio_dagster.errors import InvalidMessage, KlioError
from klio_dagster.events.messages import MAX_MESSAGE_BYTES, TrackEvent, load_json, parse_json_event
from klio_dagster.events.proto import klio_pb2

KlioMessage = klio_pb2.KlioMessage


def _feature_of(job: klio_pb2.KlioJob, graph: FeatureGraph, job_features: Mapping[str, str]) -> str:
    full = f"{job.gcp_project}-{job.job_name}" if job.gcp_project else job.job_name
    name = job_features.get(full) or job_features.get(job.job_name) or job.job_name
    if name not in graph.names:
        raise InvalidMessage(f"Klio job {full!r} maps to no feature: add it to the job-to-feature map")
    return name


def parse_klio_message(data: bytes, graph: FeatureGraph, job_features: Mapping[str, str] | None = None) -> TrackEvent:
    """A serialised ``KlioMessage`` (v1 or v2) as a :class:`TrackEvent`."""
    jobs = job_features or {}
    if len(data) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message is {len(data)} bytes, more than the {MAX_MESSAGE_BYTES} allowed")
    try:
        message = KlioMessage.FromString(data)
    except DecodeError as exc:
        raise InvalidMessage(f"not a KlioMessage protobuf: {exc}") from None
    v2 = message.version == KlioMessage.V2 or (message.data.element and not message.data.entity_id)
    raw_id = message.data.element if v2 else (message.data.element or message.data.entity_id.encode())
    try:
        track_id = validate_track_id(raw_id.decode("utf-8"))
    except (UnicodeDecodeError, KlioError) as exc:
        raise InvalidMessage(f"KlioMessage without a valid track ID in data.element/entity_id: {exc}") from None
    meta = message.metadata
    if not v2:
        features = tuple(dict.fromkeys(_feature_of(j, graph, jobs) for j in meta.downstream))
    else:
        kind = meta.intended_recipients.WhichOneof("recipients")
        if kind is None:
            raise InvalidMessage("Klio v2 message with no intended recipients (Klio drops these)")
        if kind == "anyone":
            features = ()
        else:
            limited = meta.intended_recipients.limited
            chosen = [_feature_of(j, graph, jobs) for j in limited.recipients]
            if limited.HasField("trigger_children_of"):
                parent = _feature_of(limited.trigger_children_of, graph, jobs)
                chosen += [parent, *graph.descendants([parent])]
            if not chosen:
                raise InvalidMessage("Klio v2 'limited' message with no recipients")
            features = tuple(graph.check_names(chosen))
    return TrackEvent(track_id, None, features, meta.force, meta.ping)


def parse_gcs_notification(
    attributes: Mapping[str, str], data: bytes, track_id_rule: re.Pattern[str] | None = None
) -> TrackEvent:
    """A GCS ``OBJECT_FINALIZE`` notification as a top-down event for the uploaded file.

    The track ID is the object's file name without extension, or, with
    ``track_id_rule``, the ``track_id`` group of a full match on the object name.
    """
    event_type = attributes.get("eventType")
    if event_type != "OBJECT_FINALIZE":
        raise InvalidMessage(f"GCS notification {event_type!r} is not an upload (OBJECT_FINALIZE)")
    bucket, name = attributes.get("bucketId"), attributes.get("objectId")
    if not (bucket and name):
        try:
            resource = load_json(data)
        except InvalidMessage:
            resource = None
        if isinstance(resource, dict):
            bucket, name = bucket or resource.get("bucket"), name or resource.get("name")
    if not (bucket and name):
        raise InvalidMessage("GCS notification without bucketId/objectId")
    match = track_id_rule.fullmatch(name) if track_id_rule else None
    if track_id_rule and not match:
        raise InvalidMessage(f"object {name!r} does not match the track ID rule {track_id_rule.pattern!r}")
    try:
        track_id = validate_track_id(match.group("track_id")) if match else track_id_from_path(name)
    except KlioError as exc:
        raise InvalidMessage(f"object {name!r}: {exc}") from None
    return TrackEvent(track_id, f"gs://{bucket}/{name}")


def _attributes_as_json(attributes: Mapping[str, str]) -> bytes:
    """A JSON event body from message attributes (``features`` comma-separated)."""
    body: dict[str, object] = {k: attributes[k] for k in ("track_id", "uri") if k in attributes}
    if attributes.get("features"):
        body["features"] = [f.strip() for f in attributes["features"].split(",") if f.strip()]
    for flag in ("force", "ping"):
        if flag in attributes:
            value = attributes[flag].lower()
            if value not in ("true", "false"):
                raise InvalidMessage(f"attribute {flag!r} must be 'true' or 'false', got {attributes[flag]!r}")
            body[flag] = value == "true"
    return json.dumps(body).encode()


def parse_message(
    data: bytes,
    attributes: Mapping[str, str],
    graph: FeatureGraph,
    *,
    job_features: Mapping[str, str] | None = None,
    track_id_rule: re.Pattern[str] | None = None,
) -> TrackEvent:
    """Any accepted message as a :class:`TrackEvent`, or :class:`InvalidMessage` with the reason.

    GCS notifications are recognised by their ``eventType`` attribute, JSON
    by a body starting with ``{`` (or an empty body with a ``track_id``
    attribute), and anything else is read as a ``KlioMessage``.
    """
    if "eventType" in attributes:
        return parse_gcs_notification(attributes, data, track_id_rule)
    if not data.strip() and "track_id" in attributes:
        return parse_json_event(_attributes_as_json(attributes), graph.names)
    if data.lstrip().startswith(b"{"):
        return parse_json_event(data, graph.names)
    return parse_klio_message(data, graph, job_features)
