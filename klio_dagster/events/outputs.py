"""Output events: after a (feature, track) is recorded, tell non-Dagster consumers.

Like a Klio job's event output, each materialised (feature, track) becomes one
message on an output topic (or, with no cloud, in a local queue directory), so
that consumers outside Dagster can chain on it. Two formats:

- ``json``: ``{"event": "materialized", "feature", "track_id", "uri",
  "data_version", "code_version", "run_id"}`` with ``feature`` and
  ``track_id`` also as attributes;
- ``klio``: a ``KlioMessage`` v2 for the track (``data.element``), addressed
  to anyone (top-down, as Klio's outputs are), with the feature in
  ``metadata.visited`` and the audit log, and the JSON event as
  ``data.payload``: what an existing Klio v2 job downstream reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field

from klio_dagster.events.local_queue import LocalQueue


@dataclass(frozen=True)
class FeatureDone:
    """One recorded materialisation, as consumers see it."""

    feature: str
    track_id: str
    uri: str
    data_version: str
    code_version: str
    run_id: str

    def to_json(self) -> bytes:
        return json.dumps({"event": "materialized", **asdict(self)}, sort_keys=True).encode()


def klio_output_message(done: FeatureDone) -> bytes:
    """``done`` as a serialised Klio v2 ``KlioMessage``."""
    from klio_dagster.events.klio_messages import KlioMessage

    message = KlioMessage(version=KlioMessage.V2)
    message.data.element = done.track_id.encode()
    message.data.payload = done.to_json()
    message.metadata.intended_recipients.anyone.SetInParent()
    message.metadata.visited.add(job_name=done.feature)
    audit = message.metadata.job_audit_log.add()
    audit.timestamp.FromNanoseconds(time.time_ns())
    audit.klio_job.job_name = done.feature
    return message.SerializeToString()


class OutputEventsResource(ConfigurableResource):
    """Where output events go: a Pub/Sub topic, a local queue directory, both or neither."""

    topic: str = Field(default="", description="projects/P/topics/T (usually KLIO_PUBSUB_OUTPUT_TOPIC); empty: none.")
    local_queue: str = Field(default="", description="A local queue directory (KLIO_OUTPUT_QUEUE); empty: none.")
    message_format: Literal["json", "klio"] = Field(default="json", description="'json', or 'klio' for KlioMessage v2.")
    publish_timeout_s: float = Field(default=60.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.topic or self.local_queue)

    def encode(self, done: FeatureDone) -> bytes:
        return klio_output_message(done) if self.message_format == "klio" else done.to_json()

    def publish(self, events: Sequence[FeatureDone]) -> None:
        """Publish ``events`` and wait until every one is accepted; raise on the first failure."""
        if not events:
            return
        if self.local_queue:
            queue = LocalQueue(Path(self.local_queue))
            for done in events:
                queue.publish(self.encode(done))
        if self.topic:
            from google.cloud import pubsub_v1

            publisher = pubsub_v1.PublisherClient()
            futures = [
                publisher.publish(self.topic, self.encode(d), feature=d.feature, track_id=d.track_id) for d in events
            ]
            for future in futures:
                future.result(timeout=self.publish_timeout_s)
