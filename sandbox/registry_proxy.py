"""A counting reverse proxy in front of a registry, for tests and benchmarks.

It forwards every request to the registry behind it unchanged and records
(time, method, path) of each, so a test can count exactly what Hoist sent, by
the registry's side of the wire, not by Hoist's own counters. `answer_next`
makes it answer the next requests itself (e.g. 429 with Retry-After) without
forwarding them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
               "proxy-authenticate", "content-length", "host"}


@dataclass
class Canned:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class RegistryProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")  # e.g. http://127.0.0.1:5000
        self.requests: list[tuple[float, str, str]] = []
        self._canned: list[Canned] = []
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=30.0)
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        assert self._httpd is not None, "proxy not started"
        return f"127.0.0.1:{self._httpd.server_address[1]}"

    def answer_next(self, count: int, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        with self._lock:
            self._canned.extend(Canned(status, dict(headers or {}), body) for _ in range(count))

    def count(self, method: str = "HEAD", *, since: float = 0.0, until: float | None = None, contains: str = "") -> int:
        with self._lock:
            return sum(1 for at, m, path in self.requests
                       if m == method and at >= since and (until is None or at < until) and contains in path)

    def times(self, method: str = "HEAD", contains: str = "") -> list[float]:
        with self._lock:
            return [at for at, m, path in self.requests if m == method and contains in path]

    def start(self) -> "RegistryProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.requests.append((time.time(), self.command, self.path))
                    canned = proxy._canned.pop(0) if proxy._canned else None
                if canned is not None:
                    self._reply(canned.status, canned.headers, canned.body)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                try:
                    resp = proxy._http.request(self.command, proxy.upstream + self.path, headers=headers, content=body)
                except httpx.HTTPError:
                    self._reply(502, {}, b"")
                    return
                kept = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP | {"content-encoding"}}
                self._reply(resp.status_code, kept, resp.content, length=resp.headers.get("Content-Length"))

            def _reply(self, status: int, headers: dict[str, str], body: bytes, length: str | None = None):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                # A HEAD answers with the length the GET would have (registries check it).
                self.send_header("Content-Length", length if self.command == "HEAD" and length else str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True, name="registry-proxy").start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        self._http.close()
