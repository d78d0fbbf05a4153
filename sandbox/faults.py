"""Fault switches: refuse connections, slow responses, injected 5xx/429.

Settable from Python (`server.faults`) and over HTTP at `/_sandbox/faults`
so another process (e.g. a worker under test) can be disturbed too.
"""
from __future__ import annotations

import threading
import time


class FailRule:
    def __init__(self, n, status, method, path_prefix, retry_after):
        self.remaining = int(n)
        self.status = int(status)
        self.method = method.upper() if method else None
        self.path_prefix = path_prefix
        self.retry_after = retry_after

    def matches(self, method, path) -> bool:
        return self.remaining > 0 and (self.method is None or self.method == method.upper()) and (
            self.path_prefix is None or path.startswith(self.path_prefix))

    def to_dict(self):
        return {"remaining": self.remaining, "status": self.status, "method": self.method,
                "path_prefix": self.path_prefix, "retry_after": self.retry_after}


class Faults:
    def __init__(self, server):
        self._server = server
        self._lock = threading.Lock()
        self._rules: list = []
        self._delay = 0.0
        self._delay_method = None
        self._delay_prefix = None
        self._refusing = False
        self._restore_timer = None

    # -- public API -----------------------------------------------------
    def refuse_connections(self, refuse: bool = True, seconds: float | None = None, _keep=None):
        """Close the listening socket (and drop open connections) so clients get
        "connection refused"; `refuse_connections(False)` listens again on the
        same port. With `seconds`, listening resumes automatically."""
        with self._lock:
            self._cancel_timer_locked()
            self._refusing = bool(refuse)
            if refuse and seconds is not None:
                self._restore_timer = threading.Timer(float(seconds), self.refuse_connections, (False,))
                self._restore_timer.daemon = True
                self._restore_timer.start()
        if refuse:
            self._server._go_down(keep=_keep)
        else:
            self._server._go_up()
        return self

    def _cancel_timer_locked(self):
        if self._restore_timer is not None:
            self._restore_timer.cancel()
            self._restore_timer = None

    def _cancel_timer(self):
        with self._lock:
            self._cancel_timer_locked()

    def delay(self, seconds: float, method: str | None = None, path_prefix: str | None = None):
        """Sleep `seconds` before answering every (matching) request; 0 disables."""
        with self._lock:
            self._delay = float(seconds or 0)
            self._delay_method = method.upper() if method else None
            self._delay_prefix = path_prefix
        return self

    def fail_next(self, n: int = 1, status: int = 500, method: str | None = None,
                  path_prefix: str | None = None, retry_after: float | None = 1):
        """Answer the next `n` matching requests with `status` (500, 429, 503 ...).

        429/503 carry `Retry-After: retry_after`. Note urllib3 (used by the
        kubernetes client) transparently retries idempotent requests
        (GET/PUT/DELETE) that get 429/503 with Retry-After, up to 3 times.
        """
        with self._lock:
            self._rules.append(FailRule(n, status, method, path_prefix, retry_after))
        return self

    def hold_rollouts(self, hold: bool = True):
        """Deployments stop becoming available (status shows unavailable replicas)."""
        self._server.api.hold_rollouts(hold)
        return self

    def clear(self):
        with self._lock:
            self._rules.clear()
            self._delay = 0.0
            self._delay_method = self._delay_prefix = None
            refusing = self._refusing
        if refusing:
            self.refuse_connections(False)
        self._server.api.hold_rollouts(False)
        return self

    def state(self) -> dict:
        with self._lock:
            return {"refuse_connections": self._refusing, "delay": self._delay, "delay_method": self._delay_method,
                    "delay_path_prefix": self._delay_prefix,
                    "fail_next": [r.to_dict() for r in self._rules if r.remaining > 0],
                    "hold_rollouts": self._server.api.controller.hold}

    # -- used by the HTTP layer ---------------------------------------------
    @property
    def refusing(self) -> bool:
        return self._refusing

    def wait_delay(self, method, path):
        with self._lock:
            delay = self._delay
            applies = (self._delay_method is None or self._delay_method == method) and (
                self._delay_prefix is None or path.startswith(self._delay_prefix))
        if delay > 0 and applies:
            time.sleep(delay)

    def take_failure(self, method, path):
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    return rule
            self._rules = [r for r in self._rules if r.remaining > 0]
        return None

    def configure(self, spec: dict):
        """Apply a JSON document posted to /_sandbox/faults."""
        if spec.get("clear"):
            self.clear()
        if "delay" in spec:
            d = spec["delay"]
            if isinstance(d, dict):
                self.delay(d.get("seconds", 0), d.get("method"), d.get("path_prefix"))
            else:
                self.delay(d or 0)
        fails = spec.get("fail_next")
        if fails:
            for f in fails if isinstance(fails, list) else [fails]:
                self.fail_next(f.get("n", 1), f.get("status", 500), f.get("method"), f.get("path_prefix"),
                               f.get("retry_after", 1))
        if "hold_rollouts" in spec:
            self.hold_rollouts(bool(spec["hold_rollouts"]))
        if "refuse_connections" in spec:
            rc = spec["refuse_connections"]
            seconds = rc.get("seconds") if isinstance(rc, dict) else spec.get("seconds")
            on = bool(rc) if not isinstance(rc, dict) else rc.get("refuse", True)
            if on and seconds is None:
                # Over HTTP nobody could switch it back on; insist on a duration.
                raise ValueError("refuse_connections over HTTP needs 'seconds' (the admin path goes down too)")
            return ("refuse", on, seconds)
        return None
