"""The embedded local event queue: a directory of message files.

Messages are files named by a sortable sequence, so a sensor can store
the last name it handled as its cursor. A message is deleted (acknowledged)
only on the tick after the one that read it, once Dagster has stored that
tick's cursor together with its run requests: what the sensor asked for is
durably recorded before the message goes.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from klio_dagster.events.messages import TrackEvent


@dataclass(frozen=True)
class QueuedMessage:
    message_id: str
    data: bytes


class LocalQueue:
    """``pending/`` holds messages, ``dead/`` holds dead letters with their reason."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().absolute()
        self.pending = self.root / "pending"
        self.dead = self.root / "dead"

    def publish(self, data: bytes) -> str:
        self.pending.mkdir(parents=True, exist_ok=True)
        message_id = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        tmp = self.pending / f".{message_id}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.pending / f"{message_id}.msg")
        return message_id

    def publish_events(self, events: list[TrackEvent]) -> list[str]:
        return [self.publish(e.to_json()) for e in events]

    def _ids(self) -> list[str]:
        if not self.pending.exists():
            return []
        return sorted(p.stem for p in self.pending.glob("*.msg"))

    def pull(self, after: str | None, max_messages: int) -> list[QueuedMessage]:
        """Up to ``max_messages`` messages whose ID sorts after ``after``, oldest first."""
        ids = [m for m in self._ids() if after is None or m > after][:max_messages]
        messages = []
        for message_id in ids:
            try:
                messages.append(QueuedMessage(message_id, (self.pending / f"{message_id}.msg").read_bytes()))
            except FileNotFoundError:  # acknowledged by a concurrent reader
                continue
        return messages

    def ack_through(self, last_id: str | None) -> int:
        """Delete every message up to and including ``last_id``; return how many."""
        if last_id is None:
            return 0
        done = [m for m in self._ids() if m <= last_id]
        for message_id in done:
            (self.pending / f"{message_id}.msg").unlink(missing_ok=True)
        return len(done)

    def dead_letter(self, message: QueuedMessage, reason: str) -> None:
        """Keep a bad message and its reason under ``dead/``."""
        self.dead.mkdir(parents=True, exist_ok=True)
        (self.dead / f"{message.message_id}.msg").write_bytes(message.data)
        (self.dead / f"{message.message_id}.reason.txt").write_text(reason)

    def dead_letters(self) -> list[tuple[str, str]]:
        """(message ID, reason) of every dead letter."""
        if not self.dead.exists():
            return []
        return [(p.name.removesuffix(".reason.txt"), p.read_text()) for p in sorted(self.dead.glob("*.reason.txt"))]

    def __len__(self) -> int:
        return len(self._ids())
