"""A registry host that accepts TCP connections and never says a byte: the worst registry there is.

For tests and benchmarks of what a hostile or hung host may cost Hoist
(`tests/promotions/test_outbound.py`, `bench/bench_isolation.py`). It counts
connections accepted and held at once, and tells connections from other
processes (workers) apart from the creating process's own (Linux /proc).
"""

from __future__ import annotations

import os
import selectors
import socket
import threading


def _own_client_ports(server_port: int) -> set[int]:
    """Local ports of this process's own client sockets connected to `server_port` (Linux /proc).

    Lets the black hole tell the creating process's own calls (a benchmark's web requests) from the workers'.
    """
    try:
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        ports = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = open(table).read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == server_port:
                    ports.add(int(local.rsplit(":", 1)[1], 16))
        return ports
    except OSError:
        return set()


class BlackHole:
    """A TCP server that accepts and never answers; connections stay open until the client closes them."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.open = {}  # socket → True when it came from another process (a worker), False when from this one
        self.accepted = self.accepted_others = 0
        self.max_open = self.max_open_others = 0
        self.stopping = False
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.thread = threading.Thread(target=self._run, daemon=True, name="blackhole")
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping:
            for key, _ in self.selector.select(0.2):
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    self._drain(key.fileobj)

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            other = peer[1] not in _own_client_ports(self.port)
            self.selector.register(conn, selectors.EVENT_READ)
            with self.lock:
                self.open[conn] = other
                self.accepted += 1
                self.accepted_others += other
                self.max_open = max(self.max_open, len(self.open))
                self.max_open_others = max(self.max_open_others, sum(self.open.values()))

    def _drain(self, conn: socket.socket) -> None:
        """Read and discard what the client sends; close once it has closed its side."""
        try:
            if conn.recv(65536):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._close(conn)

    def _close(self, conn: socket.socket) -> None:
        try:
            self.selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()
        with self.lock:
            self.open.pop(conn, None)

    def figures(self) -> dict:
        with self.lock:
            return {"max_open": self.max_open, "max_open_others": self.max_open_others, "accepted": self.accepted,
                    "accepted_others": self.accepted_others, "open_now": len(self.open)}

    def close(self) -> None:
        """Stop, and close every connection still held (their callers see the server hang up)."""
        self.stopping = True
        self.thread.join(timeout=5)
        for conn in list(self.open):
            self._close(conn)
        self.selector.close()
        self.listener.close()
