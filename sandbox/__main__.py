"""`python -m sandbox --port N [--token T]`: serve one sandbox cluster until stopped.

The first stdout line is the URL (flushed), so scripts can start it with
`--port 0` and read where it listens.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from .server import SandboxServer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", default=None, help="require 'Authorization: Bearer <token>'")
    args = parser.parse_args(argv)

    server = SandboxServer(host=args.host, port=args.port, token=args.token).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(server.url, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
