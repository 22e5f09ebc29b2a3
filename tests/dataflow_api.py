"""A loopback stand-in for the Dataflow API (v1b3, REST), at its HTTP boundary: no cloud account here.

It answers the calls Beam's DataflowRunner makes through the Dataflow client library (create a
job, get it, list its messages, update its requested state) the way the service does, and keeps
each request, so a test checks the job the real runner submitted and the cancellation it sent.
Jobs stay ``JOB_STATE_RUNNING`` (no worker runs here) until a request changes their state, or
report ``Recorded.ends_as`` once created (say ``JOB_STATE_DONE``: a job whose workers wrote nothing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from loopback_api import JsonHandler, serving

_JOBS = re.compile(r"^/v1b3/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/jobs(?:/(?P<id>[^/:]+))?(?P<rest>/messages)?$")
#: The JobState enum's values, as the client sends them (``enum-encoding=int``) or by name.
_STATES = {5: "JOB_STATE_CANCELLED", 2: "JOB_STATE_RUNNING", 3: "JOB_STATE_DONE", 4: "JOB_STATE_FAILED"}


@dataclass
class Recorded:
    """What the stand-in was asked: created jobs (as sent), state changes requested, every request line."""

    created: list[dict] = field(default_factory=list)
    state_changes: list[tuple[str, str]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    jobs: dict[str, dict] = field(default_factory=dict)
    ends_as: str = "JOB_STATE_RUNNING"


def _handler(recorded: Recorded) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def _body(self) -> dict:
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

        def _route(self, method: str) -> re.Match | None:
            recorded.requests.append(f"{method} {self.path}")
            return _JOBS.match(urlsplit(self.path).path)

        def do_POST(self) -> None:
            m = self._route("POST")
            if m and not m["id"]:
                body = self._body()
                recorded.created.append(body)
                job_id = f"2026-12-03_00_00_00-{len(recorded.created)}"
                job = {**body, "id": job_id, "projectId": m["project"], "location": m["region"], "currentState": "JOB_STATE_RUNNING"}
                recorded.jobs[job_id] = job
                return self._reply(200, job)
            self._reply(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})

        def do_GET(self) -> None:
            m = self._route("GET")
            if m and m["id"] in recorded.jobs:
                if m["rest"]:
                    return self._reply(200, {"jobMessages": []})
                job = recorded.jobs[m["id"]]
                if job["currentState"] == "JOB_STATE_RUNNING":
                    job["currentState"] = recorded.ends_as
                return self._reply(200, {k: v for k, v in job.items() if k not in ("steps", "environment")})
            self._reply(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})

        def do_PUT(self) -> None:
            m = self._route("PUT")
            if m and m["id"] in recorded.jobs and not m["rest"]:
                requested = self._body().get("requestedState")
                state = _STATES.get(requested, requested) if isinstance(requested, int) else requested
                recorded.state_changes.append((m["id"], state))
                job = recorded.jobs[m["id"]]
                job["currentState"] = state
                return self._reply(200, {k: v for k, v in job.items() if k not in ("steps", "environment")})
            self._reply(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})

    return Handler


@contextmanager
def dataflow_api() -> Iterator[tuple[str, Recorded]]:
    """The stand-in on a free loopback port: its endpoint (for ``--dataflow_endpoint``) and what it records."""
    recorded = Recorded()
    with serving(_handler(recorded)) as port:
        yield f"http://localhost:{port}", recorded  # "localhost": Beam's client then speaks REST over plain HTTP
