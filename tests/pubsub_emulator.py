"""The real Pub/Sub emulator for tests: found through gcloud, skipped loudly where it is absent."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT = "klio-test"


def emulator_script() -> Path | None:
    gcloud = shutil.which("gcloud")
    if not gcloud:
        return None
    root = subprocess.run([gcloud, "info", "--format=value(installation.sdk_root)"], capture_output=True, text=True).stdout.strip()
    script = Path(root) / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    return script if script.exists() else None


def emulator_command(port: int) -> list[str]:
    """The emulator's command line on 127.0.0.1:``port``; skips the test if the emulator is absent."""
    script = emulator_script()
    if script is None:
        pytest.skip("PUB/SUB EMULATOR NOT FOUND: install the Google Cloud CLI with its pubsub-emulator component")
    return [str(script), "--host=127.0.0.1", f"--port={port}"]


def create_topic_and_subscription(topic: str, sub: str, ack_deadline_s: int = 10) -> None:
    from google.cloud import pubsub_v1

    pubsub_v1.PublisherClient().create_topic(name=topic)
    pubsub_v1.SubscriberClient().create_subscription(name=sub, topic=topic, ack_deadline_seconds=ack_deadline_s)
