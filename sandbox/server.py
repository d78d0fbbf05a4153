"""HTTP layer: a loopback server the official kubernetes client talks to as-is.

stdlib `ThreadingHTTPServer`, HTTP/1.1 keep-alive (the client pools
connections), chunked streaming for watches, Bearer-token auth, fault
injection, and a small admin API under `/_sandbox/` (no auth, no faults):

    GET  /_sandbox/faults      current fault switches
    POST /_sandbox/faults      {"delay": 1.5} | {"delay": {"seconds", "method", "path_prefix"}}
                               {"fail_next": {"n": 3, "status": 500, "method": "GET", "path_prefix": "/apis",
                                              "retry_after": 1}}  (or a list of those)
                               {"refuse_connections": true, "seconds": 2}   (seconds required over HTTP)
                               {"hold_rollouts": true} | {"clear": true}
                               {"rollout_seconds": 2.5}   roll each new pod template out over 2.5 s
                                   (status climbs one replica per step; 0 = status follows spec at once)
                               {"fail_images": ["sha256:<64 hex>", ...]}   templates with an image containing
                                   a listed digest never become available, then ProgressDeadlineExceeded
                                   after spec.progressDeadlineSeconds (replaces the list; [] releases)
                               ("clear" also resets hold_rollouts, rollout_seconds and fail_images)
    POST /_sandbox/reset       wipe all objects, CRDs and faults (pending rollout steps are dropped)
    GET  /_sandbox/requests    recent requests (method, path, query, status, content_type) and
                               "total": every API request since the server started
"""
from __future__ import annotations

import collections
import hmac
import json
import logging
import select
import socket
import socketserver
import threading
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from . import errors as E
from .api import KubeApi, Request, Response, WatchResponse
from .faults import Faults

log = logging.getLogger("sandbox")
ANONYMOUS_PATHS = ("/healthz", "/readyz", "/livez", "/version")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never wait for keep-alive or watch connections on shutdown
    allow_reuse_address = True
    request_queue_size = 128

    def server_bind(self):
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup
        # that can take seconds in sandboxes; we know our name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address):
        # Dropped connections are expected (fault injection, client timeouts).
        exc = traceback.format_exc()
        if "Broken pipe" in exc or "Connection reset" in exc or "Bad file descriptor" in exc:
            return
        log.warning("sandbox: error handling request from %s:\n%s", client_address, exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle
    # plus the client's delayed ACK adds ~40 ms to every response.
    disable_nagle_algorithm = True
    server_version = "kube-apiserver-sandbox"

    def version_string(self):
        return self.server_version

    def setup(self):
        super().setup()
        self.server.app._track(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.app._untrack(self.connection)

    def log_message(self, fmt, *args):  # quiet; the request log is in app.requests
        log.debug("sandbox: " + fmt, *args)

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # -- plumbing ------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, resp: Response):
        if isinstance(resp.body, (dict, list)):
            payload = json.dumps(resp.body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        else:
            payload = str(resp.body).encode()
        self.send_response(resp.code)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for name, value in resp.headers.items():
            for v in value if isinstance(value, list) else [value]:
                self.send_header(name, str(v))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _peer_closed(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _stream(self, resp: WatchResponse):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()
        try:
            for event in resp.events(self._peer_closed):
                data = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _dispatch(self):
        app = self.server.app
        url = urlsplit(self.path)
        path = url.path
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        method = self.command
        try:
            body = self._read_body()
            if path.startswith("/_sandbox/"):
                self._admin(path, method, body)
                return
            app.faults.wait_delay(method, path)
            rule = app.faults.take_failure(method, path)
            if rule is not None:
                err = E.injected(rule.status, rule.retry_after)
                resp = Response(err.code, err.status(), dict(err.headers))
            elif app.token and path not in ANONYMOUS_PATHS and not self._authorized(app.token):
                err = E.unauthorized()
                resp = Response(err.code, err.status())
            else:
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    resp = app.api.handle(Request(method, path, query, headers, body))
                except E.ApiError as err:
                    resp = Response(err.code, err.status(), dict(err.headers))
                except Exception as exc:  # a sandbox bug: answer like the real server would
                    log.exception("sandbox: internal error on %s %s", method, self.path)
                    err = E.internal_error(f"{type(exc).__name__}: {exc}")
                    resp = Response(err.code, err.status())
            # Log before answering so the log is complete once the client has its reply.
            status = 200 if isinstance(resp, WatchResponse) else resp.code
            app._log(method, path, query, status, self.headers.get("Content-Type"))
            if isinstance(resp, WatchResponse):
                self._stream(resp)
            else:
                self._send(resp)
        except OSError:
            self.close_connection = True

    def _authorized(self, token: str) -> bool:
        header = self.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())

    def _admin(self, path, method, body):
        app = self.server.app
        try:
            spec = json.loads(body) if body else {}
        except ValueError:
            self._send(Response(400, {"error": "invalid JSON"}))
            return
        if path == "/_sandbox/reset" and method == "POST":
            app.reset()
            self._send(Response(200, {"status": "reset"}))
            return
        if path == "/_sandbox/faults" and method == "GET":
            self._send(Response(200, app.faults.state()))
            return
        if path == "/_sandbox/faults" and method in ("POST", "PUT"):
            try:
                action = app.faults.configure(spec)
            except (ValueError, TypeError) as exc:
                self._send(Response(400, {"error": str(exc)}))
                return
            if action and action[0] == "refuse" and action[1]:
                # Go down before answering (so the caller can rely on it), but
                # keep this one connection to deliver the reply, then close it.
                app.faults.refuse_connections(True, action[2], _keep=self.connection)
                self.close_connection = True
                self._send(Response(200, app.faults.state(), {"Connection": "close"}))
                return
            if action and action[0] == "refuse":
                app.faults.refuse_connections(False)
            self._send(Response(200, app.faults.state()))
            return
        if path == "/_sandbox/requests" and method == "GET":
            self._send(Response(200, {"requests": list(app.requests), "total": app.request_total}))
            return
        self._send(Response(404, {"error": f"no admin endpoint {method} {path}"}))


class SandboxServer:
    """A loopback Kubernetes API server. `SandboxServer().start()` or use `with`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None):
        self.host = host
        self.port = port or None
        self._requested_port = port
        self.token = token
        self.api = KubeApi()
        self.faults = Faults(self)
        self.requests: collections.deque = collections.deque(maxlen=2000)
        # Every API request since start (the log above keeps only the last 2,000): what a
        # benchmark counts, as the requests a real API server's metrics would.
        self.request_total = 0
        self._total_lock = threading.Lock()
        self._httpd = None
        self._state_lock = threading.Lock()
        self._conns: set = set()
        self._conns_lock = threading.Lock()
        self._started = False

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "SandboxServer":
        self._started = True
        self.api.controller.resume()
        self._go_up()
        return self

    def stop(self):
        self._started = False
        self.faults._cancel_timer()
        self.api.controller.stop()  # the rollout stepping thread
        self._go_down()

    def __enter__(self):
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reset(self):
        """Forget every object, CRD, fault and logged request."""
        self.faults.clear()
        self.api.reset()
        self.requests.clear()

    # -- assertions / seeding ------------------------------------------------
    def get_object(self, api_version: str, kind_plural: str, namespace: str | None, name: str):
        """The stored object as a dict (None if absent), bypassing HTTP and faults."""
        return self.api.get_object(api_version, kind_plural, namespace, name)

    def list_objects(self, api_version: str, kind_plural: str, namespace: str | None = None) -> list:
        """Stored objects of one resource (all namespaces when namespace is None)."""
        return self.api.list_objects(api_version, kind_plural, namespace)

    def create_object(self, manifest: dict) -> dict:
        """Create through the full validation pipeline (raises sandbox.errors.ApiError)."""
        return self.api.create_object(manifest)

    def configuration(self):
        """A `kubernetes.client.Configuration` pointing at this server."""
        from kubernetes import client

        config = client.Configuration(host=self.url)
        if self.token:
            config.api_key = {"authorization": f"Bearer {self.token}"}
        return config

    # -- listening socket management (also used by refuse_connections) ---------
    def _go_up(self):
        with self._state_lock:
            if self._httpd is not None or not self._started:
                return
            httpd = _HTTPServer((self.host, self.port or self._requested_port or 0), _Handler)
            httpd.app = self
            self.port = httpd.server_address[1]
            thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                      name=f"sandbox-kube-{self.port}", daemon=True)
            thread.start()
            self._httpd = httpd

    def _go_down(self, keep=None):
        with self._state_lock:
            httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        with self._conns_lock:
            conns = [c for c in self._conns if c is not keep]
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def listening(self) -> bool:
        return self._httpd is not None

    def _track(self, conn):
        with self._conns_lock:
            self._conns.add(conn)

    def _untrack(self, conn):
        with self._conns_lock:
            self._conns.discard(conn)

    def _log(self, method, path, query, status, content_type):
        with self._total_lock:
            self.request_total += 1
        self.requests.append({"method": method, "path": path, "query": dict(query), "status": status,
                              "content_type": content_type})
