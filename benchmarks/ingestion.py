"""I1 and I2: streaming ingestion from the Pub/Sub emulator, side by side with the raw transport.

I1 throughput: a backlog of N messages (JSON top-down events, one distinct
track each, ``uri`` the path of a real small WAV file) is published to the
Pub/Sub emulator *before* anything pulls; then the real Dagster sensor daemon
loop (``dagster._daemon.sensor.execute_sensor_iteration_loop``, exactly what
``dagster-daemon`` runs) evaluates the reference code location ``definitions``
(with ``KLIO_PUBSUB_SUBSCRIPTION`` set, so its sensor is
``klio_dagster.pubsub.build_pubsub_sensor``), loaded through a managed gRPC
code server as ``dagster dev`` does, against a fresh SQLite instance whose
``dagster.yaml`` is ``resources.local.INSTANCE_CONFIG`` (a
``QueuedRunCoordinator``). Measured: messages/s until every message is a
durable ``tracks`` partition and part of a QUEUED run (nothing executes the
runs). Baseline: the raw transport, a plain ``SubscriberClient`` pulling and
acknowledging the same number of messages from the same emulator with the
same pull sizes (1,000 asked per request, acknowledged a tick's worth -
``max_messages_per_tick`` - at a time), no Dagster. Also printed: tick size,
duration and cadence, and where the daemon's time inside ticks went (its
calls into the code location and the instance are timed; they run unchanged).
Publishing and the baseline run in child processes, not in the daemon's.

I1 latency: messages published at a steady rate for some seconds while the
daemon runs; latency is publish call -> the run containing the track is
enqueued (its RUN_ENQUEUED event). Baseline: a plain subscriber on a second
subscription of the same topic, publish -> pulled.

I2 memory: RSS (and peak RSS since the daemon started) of the daemon process
(this one) and of the code server (where the sensor body runs: pulls,
parsing, planning, source records, partition adds), sampled after every tick
and printed at each fifth of the backlog - at tick granularity, so with
20,000-message ticks only at 20k, 40k, 50k - with the ratio last/first; with
``--tracemalloc`` also this process's Python heap (with ``--in-process`` the
sensor body runs here too; tracing slows it, so throughput is then not
comparable).

    cd benchmarks && ../.venv/bin/python ingestion.py                       # 50,000 backlog, 50 msg/s for 60 s
    cd benchmarks && ../.venv/bin/python ingestion.py --quick               # smoke test (about a minute)
    cd benchmarks && ../.venv/bin/python ingestion.py --backlog 50000 --rate 50 --steady-seconds 60 --max-minutes 120

Each phase stops after ``--max-minutes`` and reports what it measured until
then (marked "cut off").
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common import REPO, fresh_environment

PROJECT = "klio-bench"
SENSOR = "klio_features_pubsub_ingestion"
PULL_SIZE = 1_000  # what klio_dagster.pubsub._pull asks for per request
ACK_DEADLINE_S = 60  # the subscription's: covers pull -> modify_ack_deadline (300 s) in the sensor
MB = 1024 * 1024


def tick_size() -> int:
    """PubSubSourceResource.max_messages_per_tick's default (resources.local leaves it)."""
    from klio_dagster.events.pubsub import PubSubSourceResource

    return PubSubSourceResource.model_fields["max_messages_per_tick"].default


# --- the emulator ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emulator_script() -> Path:
    """The emulator of the Google Cloud CLI (as tests/test_pubsub_sensor.py finds it)."""
    gcloud = shutil.which("gcloud")
    if not gcloud:
        sys.exit("PUB/SUB EMULATOR NOT FOUND: install the Google Cloud CLI with its pubsub-emulator component")
    info = subprocess.run([gcloud, "info", "--format=value(installation.sdk_root)"], capture_output=True, text=True)
    root = info.stdout.strip()
    script = Path(root) / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    if not script.exists():
        sys.exit(f"PUB/SUB EMULATOR NOT FOUND at {script}")
    return script


@contextmanager
def pubsub_emulator(timeout_s: float = 60) -> Iterator[str]:
    """Start the emulator on a free port; PUBSUB_EMULATOR_HOST is set while the block runs."""
    port = free_port()
    proc = subprocess.Popen(
        [str(emulator_script()), "--host=127.0.0.1", f"--port={port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.time() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"the Pub/Sub emulator did not start within {timeout_s:.0f} s") from None
                time.sleep(0.2)
        os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{port}"
        yield os.environ["PUBSUB_EMULATOR_HOST"]
    finally:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def create_topic(name: str, subscriptions: list[str]) -> tuple[str, list[str]]:
    """A topic with the given subscriptions (ack deadline ACK_DEADLINE_S)."""
    from google.cloud import pubsub_v1

    topic = f"projects/{PROJECT}/topics/{name}"
    pubsub_v1.PublisherClient().create_topic(name=topic)
    subscriber = pubsub_v1.SubscriberClient()
    subs = [f"projects/{PROJECT}/subscriptions/{s}" for s in subscriptions]
    for sub in subs:
        subscriber.create_subscription(name=sub, topic=topic, ack_deadline_seconds=ACK_DEADLINE_S)
    return topic, subs


# --- messages --------------------------------------------------------------------------------


def write_audio(folder: Path, n: int = 4) -> list[str]:
    """A few tiny real WAV files; their paths are the events' ``uri`` (reused across track IDs)."""
    import numpy as np
    import soundfile

    paths = []
    for i in range(n):
        path = folder / f"tone-{i}.wav"
        t = np.arange(11_025) / 22_050
        soundfile.write(path, 0.1 * np.sin(2 * np.pi * (220 + 110 * i) * t), 22_050)
        paths.append(str(path))
    return paths


def event(track_id: str, uris: list[str], i: int) -> bytes:
    """A JSON top-down event, as `klio-dagster publish` sends it."""
    return json.dumps({"track_id": track_id, "uri": uris[i % len(uris)]}).encode()


def publish_backlog(topic: str, prefix: str, n: int, uris: list[str]) -> float:
    """Publish n events (batched) and wait for all of them; returns seconds (not part of any figure)."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient(batch_settings=pubsub_v1.types.BatchSettings(max_messages=1_000, max_latency=0.05))
    start = time.perf_counter()
    futures = [publisher.publish(topic, event(f"{prefix}-{i:06d}", uris, i)) for i in range(n)]
    for future in futures:
        future.result(timeout=120)
    return time.perf_counter() - start


def transport_job(job: str, **spec) -> dict:
    """Run ``publish`` or ``drain`` in a separate process, so that the daemon process's memory
    (I2) holds only what the daemon does, as in a deployment; returns its JSON result."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--transport-job", json.dumps({"job": job, **spec})],
        capture_output=True, text=True, env=os.environ,
    )
    if out.returncode:
        raise RuntimeError(f"{job} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_transport_job(spec: dict) -> None:
    """The other side of ``transport_job``."""
    if spec["job"] == "publish":
        seconds = publish_backlog(spec["topic"], spec["prefix"], spec["n"], spec["uris"])
        print(json.dumps({"seconds": seconds}))
    else:
        print(json.dumps(asdict(drain_raw(spec["subscription"], spec["expected"], spec["timeout_s"]))))


# --- baseline: the raw transport -------------------------------------------------------------


@dataclass
class RawDrain:
    seconds: float
    received: int
    duplicates: int
    pulls: int
    sizes: list[int]


def drain_raw(subscription: str, expected: int, timeout_s: float) -> RawDrain:
    """Pull (1,000 asked per request) and acknowledge a tick's worth at a time until ``expected`` distinct messages."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    per_tick = tick_size()
    seen: set[str] = set()
    duplicates = pulls = 0
    sizes: list[int] = []
    start = time.perf_counter()
    while len(seen) < expected and time.perf_counter() - start < timeout_s:
        batch = []
        while len(batch) < per_tick and len(seen) + len(batch) < expected:
            response = subscriber.pull(subscription=subscription, max_messages=min(PULL_SIZE, per_tick - len(batch)), timeout=10)
            pulls += 1
            sizes.append(len(response.received_messages))
            if not response.received_messages:
                break
            batch.extend(response.received_messages)
        for m in batch:
            duplicates += m.message.message_id in seen
            seen.add(m.message.message_id)
        if batch:
            subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in batch])
    return RawDrain(time.perf_counter() - start, len(seen), duplicates, pulls, sizes)


# --- memory ----------------------------------------------------------------------------------


def rss_mb(pid: int | str = "self", field: str = "VmRSS") -> float:
    """Resident memory of a process now (VmRSS) or its peak so far (VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def reset_peak_rss(pid: int | str = "self") -> None:
    """Start VmHWM afresh (Linux: writing 5 to clear_refs), so a peak is the daemon's own."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def code_server_pid() -> int | None:
    """The managed `dagster api grpc` process started for the code location (a child of this one)."""
    me = str(os.getpid())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if ppid == me and "dagster" in cmdline and "grpc" in cmdline:
            return int(proc.name)
    return None


@dataclass
class MemorySample:
    messages: int
    seconds: float
    daemon_mb: float
    server_mb: float
    daemon_peak_mb: float
    server_peak_mb: float
    heap_mb: float | None


# --- the real daemon -------------------------------------------------------------------------


class Stopwatch:
    """Time spent in chosen methods of the daemon's objects (instrumentation only: the originals run)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self._originals: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.calls[label] += 1
                self.seconds[label] += time.perf_counter() - start

        self._originals.append((owner, name, owner.__dict__.get(name) if isinstance(owner, type) else None))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original in reversed(self._originals):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._originals.clear()

    def reset(self) -> dict[str, tuple[int, float]]:
        """What was measured since the last reset: label -> (calls, seconds)."""
        out = {k: (self.calls[k], self.seconds[k]) for k in self.calls}
        self.calls.clear()
        self.seconds.clear()
        return out


def instrument(instance) -> Stopwatch:
    """Time the daemon's steps: sensor evaluation (in the code location), partition checks and adds, runs."""
    from dagster._core.remote_representation.code_location import GrpcServerCodeLocation, InProcessCodeLocation

    watch = Stopwatch()
    for cls in (GrpcServerCodeLocation, InProcessCodeLocation):
        watch.wrap(cls, "get_sensor_execution_data", "sensor evaluation (code location)")
        watch.wrap(cls, "get_execution_plan", "execution plan of the run (code location)")
    watch.wrap(instance, "has_dynamic_partition", "partition checks (has_dynamic_partition, one per key)")
    watch.wrap(instance, "add_dynamic_partitions", "partition adds (add_dynamic_partitions)")
    watch.wrap(instance, "create_run", "create_run")
    watch.wrap(instance, "submit_run", "submit_run (queue)")
    return watch


@dataclass
class TickRecord:
    tick_id: int
    status: str
    start: float
    end: float
    added: int
    runs: int
    note: str
    cursor_bytes: int


@dataclass
class DaemonRun:
    """What the daemon did while it was driven: ticks, memory samples, elapsed time."""

    ticks: list[TickRecord] = field(default_factory=list)
    memory: list[MemorySample] = field(default_factory=list)
    started: float = 0.0
    seconds: float = 0.0
    cut_off: bool = False
    steps: dict[str, tuple[int, float]] = field(default_factory=dict)

    @property
    def added(self) -> int:
        """Messages turned into queued runs so far (their partitions are added before or with the runs)."""
        return sum(t.added for t in self.ticks)


def workspace_target(in_process: bool):
    """The reference code location: a managed gRPC code server (as deployed), or loaded in this process."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget, ModuleTarget

    if not in_process:
        return ModuleTarget("definitions", None, str(REPO), None)
    origin = LoadableTargetOrigin(executable_path=sys.executable, module_name="definitions", working_directory=str(REPO))
    return InProcessWorkspaceLoadTarget(InProcessCodeLocationOrigin(origin, location_name="definitions"))


@contextmanager
def sensor_daemon(label: str, subscription: str, in_process: bool = False) -> Iterator[Daemon]:
    """A fresh instance (INSTANCE_CONFIG) and the reference code location (see ``workspace_target``)."""
    from dagster import DagsterInstance
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._daemon.controller import create_daemon_grpc_server_registry

    from resources.local import INSTANCE_CONFIG

    with fresh_environment(label) as root:
        (root / "home" / "dagster.yaml").write_text(INSTANCE_CONFIG)
        os.environ["KLIO_PUBSUB_SUBSCRIPTION"] = subscription
        logger = logging.getLogger(f"klio-bench-daemon-{label}")
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.addHandler(logging.FileHandler(root / "daemon.log"))  # as dagster-daemon logs, off the console
        try:
            with (
                DagsterInstance.get() as instance,
                create_daemon_grpc_server_registry(instance, code_server_log_level="WARNING") as registry,
                WorkspaceProcessContext(instance, workspace_target(in_process), grpc_server_registry=registry) as context,
            ):
                watch = instrument(instance)
                try:
                    yield Daemon(instance, context, logger, root, watch)
                finally:
                    watch.restore()
        finally:
            os.environ.pop("KLIO_PUBSUB_SUBSCRIPTION", None)


class Daemon:
    """Drives ``execute_sensor_iteration_loop`` in this thread, as the sensor daemon does."""

    def __init__(self, instance, context, logger: logging.Logger, root: Path, watch: Stopwatch):
        self.instance, self.context, self.logger, self.root, self.watch = instance, context, logger, root, watch
        (entry,) = context.create_request_context().get_code_location_entries().values()
        if entry.code_location is None:
            raise RuntimeError(f"the code location did not load: {entry.load_error}")
        (repo,) = entry.code_location.get_repositories().values()
        sensor = repo.get_sensor(SENSOR)
        self.origin_id, self.selector_id = sensor.get_remote_origin_id(), sensor.selector_id
        self.server_pid = code_server_pid()
        self.seen: set[int] = set()  # ticks already reported, across calls of run()
        reset_peak_rss()
        if self.server_pid:
            reset_peak_rss(self.server_pid)

    def run(self, done: Callable[[DaemonRun], bool], max_seconds: float, heap: bool = False) -> DaemonRun:
        """Loop until ``done`` (checked after every finished tick) or ``max_seconds``."""
        from dagster._daemon.sensor import execute_sensor_iteration_loop

        result = DaemonRun(started=time.time())
        start = result.started
        self.watch.reset()
        loop = execute_sensor_iteration_loop(self.context, self.logger, threading.Event())
        try:
            for _ in loop:
                for tick in self._finished_ticks():
                    result.ticks.append(tick)
                    self._sample(result, start, heap)
                if done(result):
                    break
                if time.time() - start > max_seconds:
                    result.cut_off = True
                    break
        finally:
            loop.close()
        result.seconds = time.time() - start
        result.steps = self.watch.reset()
        return result

    def _finished_ticks(self) -> list[TickRecord]:
        from dagster._core.scheduler.instigation import TickStatus

        out = []
        for tick in reversed(self.instance.get_ticks(self.origin_id, self.selector_id, limit=3)):
            if tick.tick_id in self.seen or tick.status == TickStatus.STARTED:
                continue
            self.seen.add(tick.tick_id)
            added = sum(self._tracks_of(run_id) for run_id in tick.run_ids)
            note = tick.skip_reason or (tick.error.message.strip().splitlines()[-1] if tick.error else "")
            out.append(TickRecord(tick.tick_id, tick.status.value, tick.timestamp, tick.end_timestamp or time.time(), added,
                                  len(tick.run_ids), note, len(tick.cursor or "")))
        return out

    def _tracks_of(self, run_id: str) -> int:
        """How many tracks (messages: one distinct track each) a queued run covers (klio/tracks tag)."""
        run = self.instance.get_run_by_id(run_id)
        return int(run.tags.get("klio/tracks", 0)) if run else 0

    def _sample(self, result: DaemonRun, start: float, heap: bool) -> None:
        result.memory.append(
            MemorySample(
                messages=result.added,
                seconds=time.time() - start,
                daemon_mb=rss_mb(),
                server_mb=rss_mb(self.server_pid) if self.server_pid else float("nan"),
                daemon_peak_mb=rss_mb(field="VmHWM"),
                server_peak_mb=rss_mb(self.server_pid, "VmHWM") if self.server_pid else float("nan"),
                heap_mb=tracemalloc.get_traced_memory()[0] / MB if heap else None,
            )
        )

    def queued_runs(self) -> list[dict]:
        """Every run the sensor created: status, tracks, enqueue time."""
        from dagster import DagsterEventType

        runs = []
        for record in self.instance.get_run_records():
            run = record.dagster_run
            (op_config,) = run.run_config["ops"].values()
            enqueued = self.instance.get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_ENQUEUED).records
            runs.append({
                "status": run.status.value,
                "tracks": op_config["config"]["tracks"],
                "enqueued_at": enqueued[0].event_log_entry.timestamp if enqueued else None,
            })
        return runs

    def partitions(self) -> int:
        return len(self.instance.get_dynamic_partitions("tracks"))


def sensor_code_version() -> str:
    """Which sensor code a phase ran (others may be editing it): sha1 of pubsub.py, and whether it is committed."""
    path = REPO / "klio_dagster" / "pubsub.py"
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:10]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", str(path)], cwd=REPO).returncode != 0
    return f"klio_dagster/pubsub.py sha1 {digest} ({'uncommitted changes on ' if dirty else 'as in '}{head})"


# --- I1 throughput and I2 memory -------------------------------------------------------------


def backlog_phase(args, uris: list[str]) -> None:
    n = args.backlog
    topic, (raw_sub,) = create_topic("backlog-raw", ["backlog-raw"])
    published = transport_job("publish", topic=topic, prefix="raw", n=n, uris=uris)["seconds"]
    raw = RawDrain(**transport_job("drain", subscription=raw_sub, expected=n, timeout_s=args.max_minutes * 60))
    print(f"published {n} messages for the baseline in {published:.1f} s ({n / published:,.0f} msg/s, not measured)")

    topic, (sub,) = create_topic("backlog-klio", ["backlog-klio"])
    published = transport_job("publish", topic=topic, prefix="track", n=n, uris=uris)["seconds"]
    print(f"published {n} messages for klio-dagster in {published:.1f} s")
    if args.tracemalloc:
        tracemalloc.start()
    print(f"backlog phase: {sensor_code_version()}")
    with sensor_daemon("ingestion-backlog", sub, args.in_process) as daemon:
        run = daemon.run(lambda r: r.added >= n, args.max_minutes * 60, heap=args.tracemalloc)
        finished_at = run.ticks[-1].end if run.ticks else time.time()
        # One more tick acknowledges the last batch (not part of the figure), then nothing must be left.
        after = daemon.run(lambda r: len(r.ticks) >= 1, 120)
        runs = daemon.queued_runs()
        partitions = daemon.partitions()
        log = daemon.root / "daemon.log"
        errors = [line for line in log.read_text().splitlines() if "rror" in line][:3]
    leftover = transport_job("drain", subscription=sub, expected=1, timeout_s=5)["received"]

    elapsed = finished_at - run.started  # from the daemon loop's start, code location already loaded
    queued_tracks = sum(len(r["tracks"]) for r in runs if r["status"] == "QUEUED")
    report_ticks(run)
    next_tick = f"{after.ticks[-1].status}, {after.ticks[-1].note}" if after.ticks else "-"
    print(f"after the backlog: {partitions} partitions, {len(runs)} runs ({queued_tracks} tracks in QUEUED runs), "
          f"{leftover} message(s) left unacknowledged on the subscription; next tick: {next_tick}")
    if errors:
        print("daemon log errors:", *errors, sep="\n  ")
    klio_rate = run.added / elapsed if elapsed > 0 else 0.0
    raw_rate = raw.received / raw.seconds
    cut = f"  CUT OFF after {args.max_minutes:g} min: {run.added} of {n} processed" if run.cut_off else ""
    print(f"I1 raw transport (pull+ack)   {raw.received:7d} msgs in {raw.seconds:8.1f} s  {raw_rate:9,.0f} msg/s  "
          f"({raw.pulls} pulls, {max(raw.sizes)} max per pull, {raw.duplicates} redelivered)")
    print(f"I1 klio-dagster sensor daemon {run.added:7d} msgs in {elapsed:8.1f} s  {klio_rate:9,.1f} msg/s{cut}")
    print(f"I1 throughput ratio (klio / raw): {klio_rate / raw_rate:.4f}x   klio {klio_rate:,.1f} msg/s (goal >= 1,000 msg/s)")
    report_memory(run, n, args.tracemalloc)


def report_ticks(run: DaemonRun) -> None:
    """Tick cadence and size: what bounds the throughput."""
    busy = [t for t in run.ticks if t.added]
    if not busy:
        print("no tick queued a run:", *{t.note for t in run.ticks})
        return
    durations = [t.end - t.start for t in busy]
    gaps = [b.start - a.start for a, b in zip(run.ticks, run.ticks[1:])]
    sizes = [t.added for t in busy]
    print(f"ticks: {len(run.ticks)} ({len(busy)} with messages, {sum(t.status == 'FAILURE' for t in run.ticks)} failed); "
          f"messages per tick median {statistics.median(sizes):.0f} (max {max(sizes)}); "
          f"tick duration median {statistics.median(durations):.2f} s (max {max(durations):.2f} s); "
          f"tick start to next tick start median {statistics.median(gaps) if gaps else float('nan'):.2f} s "
          f"({sum(g > 7.5 for g in gaps)} of {len(gaps)} gaps over 7.5 s)")
    print(f"      busy-time capacity: {sum(sizes) / sum(durations):,.0f} msg/s while inside a tick; "
          f"largest cursor stored {max(t.cursor_bytes for t in run.ticks) / 1024:,.0f} KiB")
    first, last = busy[: min(5, len(busy))], busy[-min(5, len(busy)):]
    print(f"      tick duration first 5 ticks {statistics.mean(t.end - t.start for t in first):.2f} s, "
          f"last 5 ticks {statistics.mean(t.end - t.start for t in last):.2f} s")
    inside = sum(t.end - t.start for t in run.ticks)
    accounted = 0.0
    parts = []
    for label, (calls, seconds) in sorted(run.steps.items(), key=lambda kv: -kv[1][1]):
        accounted += seconds
        parts.append(f"{label} {seconds:.1f} s / {calls} calls")
    print(f"      the daemon's {inside:.1f} s inside ticks: " + "; ".join(parts) + f"; rest {max(0.0, inside - accounted):.1f} s")
    for t in run.ticks:
        if t.status == "FAILURE":
            print(f"      failed tick {t.tick_id}: {t.note}")
            break


def report_memory(run: DaemonRun, n: int, heap: bool) -> None:
    """I2: memory at each fifth of the backlog (or of what was processed), ratio last/first."""
    processed = run.added
    if not run.memory or not processed:
        print("I2 no memory samples")
        return
    step = (n if not run.cut_off else processed) / 5
    marks = []
    for k in range(1, 6):
        sample = next((m for m in run.memory if m.messages >= k * step - 0.5), None)
        if sample and sample not in marks:
            marks.append(sample)
    in_process = math.isnan(marks[0].server_mb)
    process = "daemon + sensor (in process)" if in_process else "daemon"
    for m in marks:
        server = "" if in_process else f"  code server (sensor body) RSS {m.server_mb:6.1f} MB (peak {m.server_peak_mb:6.1f})"
        heap_part = f"  Python heap {m.heap_mb:6.1f} MB" if m.heap_mb is not None else ""
        print(f"I2 after {m.messages:6d} messages ({m.seconds:7.1f} s): {process} RSS {m.daemon_mb:6.1f} MB "
              f"(peak {m.daemon_peak_mb:6.1f}){server}{heap_part}")
    first, last = marks[0], marks[-1]
    server_ratio = "" if in_process else f", code server {last.server_mb / first.server_mb:.2f}x"
    heap_ratio = f", Python heap {last.heap_mb / first.heap_mb:.2f}x" if heap and first.heap_mb else ""
    print(f"I2 memory ratio {last.messages} vs {first.messages} messages: {process} {last.daemon_mb / first.daemon_mb:.2f}x"
          f"{server_ratio}{heap_ratio} (flat = 1.0x)")


# --- I1 latency ------------------------------------------------------------------------------


def steady_phase(args, uris: list[str]) -> None:
    total = int(args.rate * args.steady_seconds)
    topic, (sub, raw_sub) = create_topic("steady", ["steady-klio", "steady-raw"])
    print(f"steady phase: {sensor_code_version()}")
    with tempfile.TemporaryDirectory() as tmp, sensor_daemon("ingestion-steady", sub, args.in_process) as daemon:
        out = Path(tmp) / "published.json"
        spec = {"topic": topic, "raw_sub": raw_sub, "rate": args.rate, "seconds": args.steady_seconds, "uris": uris,
                "out": str(out)}
        command = [sys.executable, os.path.abspath(__file__), "--steady-publisher", json.dumps(spec)]
        publisher = subprocess.Popen(command, env=os.environ)
        try:
            run = daemon.run(lambda r: r.added >= total, args.max_minutes * 60 + args.steady_seconds)
        finally:
            publisher.wait(args.steady_seconds + 120)
        runs = daemon.queued_runs()
        times = json.loads(out.read_text())
    published = times["published"]
    klio = [r["enqueued_at"] - published[t] for r in runs if r["enqueued_at"] for t in r["tracks"] if t in published]
    raw = [times["received"][t] - times["published"][t] for t in times["received"]]
    report_ticks(run)
    cut = f"  CUT OFF after {args.max_minutes:g} min: {len(klio)} of {total} queued" if run.cut_off else ""
    print(f"I1 steady {args.rate:g} msg/s for {args.steady_seconds:g} s ({total} messages), latency from publish:")
    print(f"I1 raw transport (pulled)     median {statistics.median(raw):7.3f} s  p95 {percentile(raw, 95):7.3f} s  "
          f"max {max(raw):7.3f} s  ({len(raw)} received)")
    if klio:
        print(f"I1 klio-dagster (run queued)  median {statistics.median(klio):7.3f} s  p95 {percentile(klio, 95):7.3f} s  "
              f"max {max(klio):7.3f} s  ({len(klio)} queued in {len(runs)} runs){cut}")
        print(f"I1 latency ratio (klio / raw): median {statistics.median(klio) / statistics.median(raw):,.0f}x, "
              f"p95 {percentile(klio, 95) / percentile(raw, 95):,.0f}x")
        behind = run.ticks[-1].end - max(published.values())
        print(f"I1 klio-dagster kept up: the last message was queued {behind:.1f} s after the last was published")
    if run.memory:
        a, b = run.memory[0], run.memory[-1]
        print(f"I2 steady, first to last of {len(run.memory)} ticks: daemon RSS {a.daemon_mb:.1f} -> {b.daemon_mb:.1f} MB, "
              f"code server RSS {a.server_mb:.1f} -> {b.server_mb:.1f} MB")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def steady_publisher(spec: dict) -> None:
    """In its own process: publish at a fixed rate, and pull the raw-baseline subscription in a thread."""
    from google.cloud import pubsub_v1

    total = int(spec["rate"] * spec["seconds"])
    received: dict[str, float] = {}

    def pull_raw() -> None:
        subscriber = pubsub_v1.SubscriberClient()
        deadline = time.time() + spec["seconds"] + 60
        while len(received) < total and time.time() < deadline:
            response = subscriber.pull(subscription=spec["raw_sub"], max_messages=PULL_SIZE, timeout=5)
            now = time.time()
            for m in response.received_messages:
                received.setdefault(json.loads(m.message.data)["track_id"], now)
            if response.received_messages:
                subscriber.acknowledge(subscription=spec["raw_sub"], ack_ids=[m.ack_id for m in response.received_messages])

    puller = threading.Thread(target=pull_raw)
    puller.start()
    publisher = pubsub_v1.PublisherClient()
    published: dict[str, float] = {}
    futures = []
    start = time.time() + 0.5
    for i in range(total):
        time.sleep(max(0.0, start + i / spec["rate"] - time.time()))
        track = f"steady-{i:06d}"
        published[track] = time.time()
        futures.append(publisher.publish(spec["topic"], event(track, spec["uris"], i)))
    for future in futures:
        future.result(timeout=60)
    puller.join()
    Path(spec["out"]).write_text(json.dumps({"published": published, "received": received}))


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=50.0, help="steady publish rate, messages/s")
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--max-minutes", type=float, default=120.0, help="cut each phase off after this")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: --backlog 2000 --rate 10 --steady-seconds 10 --max-minutes 5")
    parser.add_argument("--skip-backlog", action="store_true")
    parser.add_argument("--skip-steady", action="store_true")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace this process's Python heap (slows it)")
    parser.add_argument("--in-process", action="store_true", help="load the code location in this process (no code server): "
                        "with --tracemalloc the heap then includes the sensor body")
    parser.add_argument("--steady-publisher", help=argparse.SUPPRESS)
    parser.add_argument("--transport-job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated (SIGTERM)"))  # so the emulator and code server are stopped
    if args.steady_publisher:
        steady_publisher(json.loads(args.steady_publisher))
        return
    if args.transport_job:
        run_transport_job(json.loads(args.transport_job))
        return
    if args.quick:
        args.backlog, args.rate, args.steady_seconds, args.max_minutes = 2_000, 10.0, 10.0, 5.0
    with tempfile.TemporaryDirectory(prefix="klio-bench-audio-") as audio, pubsub_emulator():
        uris = write_audio(Path(audio))
        where = "this process" if args.in_process else "a managed gRPC code server"
        print(f"Pub/Sub emulator, {os.cpu_count()} cores; backlog {args.backlog}, "
              f"steady {args.rate:g} msg/s x {args.steady_seconds:g} s; "
              f"code location in {where}; each phase cut off after {args.max_minutes:g} min")
        if not args.skip_backlog:
            backlog_phase(args, uris)
        if not args.skip_steady:
            steady_phase(args, uris)


if __name__ == "__main__":
    main()
