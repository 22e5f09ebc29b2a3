"""A loopback stand-in for the Kubernetes API server, at its HTTP boundary: no cluster can run here.

It answers the calls dagster-k8s's run launcher makes (create a Job, list a Job's pods, delete a
Job) the way the API server does, and keeps each request's body, so a test checks the Job the
real launcher built and the real Kubernetes client sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from loopback_api import JsonHandler, serving

_JOBS = re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs(?:/(?P<name>[^/?]+))?")
_PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods")


@dataclass
class Recorded:
    """What the stand-in was asked: created Jobs (as sent), deleted Jobs and every request line."""

    created: list[dict] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def _handler(recorded: Recorded) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def do_POST(self) -> None:
            recorded.requests.append(f"POST {self.path}")
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if (m := _JOBS.match(self.path)) and not m["name"]:
                recorded.created.append({"namespace": m["ns"], "job": body})
                return self._reply(201, body)
            self._reply(404, {"kind": "Status", "status": "Failure", "reason": "NotFound"})

        def do_GET(self) -> None:
            recorded.requests.append(f"GET {self.path}")
            if _PODS.match(self.path):
                return self._reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})
            self._reply(404, {"kind": "Status", "status": "Failure", "reason": "NotFound"})

        def do_DELETE(self) -> None:
            recorded.requests.append(f"DELETE {self.path}")
            if (m := _JOBS.match(self.path)) and m["name"]:
                recorded.deleted.append((m["ns"], m["name"]))
                return self._reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
            self._reply(404, {"kind": "Status", "status": "Failure", "reason": "NotFound"})

    return Handler


@contextmanager
def kubernetes_api(folder: Path) -> Iterator[tuple[Path, Recorded]]:
    """The stand-in on a free loopback port, and a kubeconfig file pointing at it."""
    recorded = Recorded()
    with serving(_handler(recorded)) as port:
        kubeconfig = folder / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "test", "user": {"token": "test"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        }))
        yield kubeconfig, recorded
