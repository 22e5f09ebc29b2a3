"""Run every benchmark with the arguments recorded in docs/benchmarks.md (about 35 minutes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = [
    ["throughput.py", "--tracks", "100", "--duration", "180"],
    ["planning.py", "--tracks", "100000", "--materialized", "1000"],
    ["memory.py", "--sizes", "100", "1000", "--duration", "5"],
    ["ingestion.py", "--backlog", "50000", "--rate", "50", "--steady-seconds", "60"],
]


def main() -> int:
    for args in RUNS:
        print(f"$ python benchmarks/{' '.join(args)}", flush=True)
        code = subprocess.call([sys.executable, *args], cwd=HERE)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
