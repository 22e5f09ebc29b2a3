"""The command the local Beam runner starts for each SDK worker: ask the worker forker for one.

Run as ``python -I -S fork_client.py SOCKET`` (standard library only, so it starts in
milliseconds). It sends its environment (Beam puts the worker's control and logging
endpoints there) to the forker listening on ``SOCKET``, waits for the forked worker to end
and exits with its status. If this process is killed, the forker sees the connection close
and kills the worker, so Beam's handle on the worker stays this process.
"""

import json
import os
import socket
import sys
import time

CONNECT_TIMEOUT_S = 120.0


def main(path: str) -> int:
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        while True:
            try:
                conn.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    print(f"klio-dagster: no worker forker listens on {path}", file=sys.stderr)
                    return 1
                time.sleep(0.05)
        conn.sendall(json.dumps({"env": dict(os.environ)}).encode() + b"\n")
        replies = conn.makefile("r")
        for line in replies:
            kind, _, value = line.strip().partition(" ")
            if kind == "exit":
                return int(value)
    print("klio-dagster: the worker forker ended before its worker", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
