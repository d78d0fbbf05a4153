"""Fault switches: refuse connections, slow responses, injected 5xx/429,
slow or failing deployment rollouts.

Settable from Python (`server.faults`) and over HTTP at `/_sandbox/faults`
so another process (e.g. a worker under test) can be disturbed too.
"""
from __future__ import annotations

import math
import re
import threading
import time

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def check_rollout_seconds(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"rollout_seconds must be a number >= 0 (seconds), got {value!r}")
    return float(value)


def check_fail_images(value) -> list:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"fail_images must be a list of image digests ('sha256:<64 hex>'), got {value!r}")
    for i, digest in enumerate(value):
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise ValueError(f"fail_images[{i}] must be an image digest 'sha256:<64 lowercase hex>', got {digest!r}")
    return list(dict.fromkeys(value))


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

    def rollout_seconds(self, seconds: float):
        """Roll out each new pod template over `seconds` (status climbs one replica per step,
        written by a background thread); 0 (the default) = status follows spec at once and
        finishes rollouts in progress."""
        self._server.api.configure_rollouts(rollout_seconds=check_rollout_seconds(seconds))
        return self

    def fail_images(self, digests):
        """Deployments whose pod template has an image containing one of these digests
        ('sha256:<64 hex>') never become available and hit ProgressDeadlineExceeded after
        spec.progressDeadlineSeconds. Replaces the list; [] lets stuck rollouts complete."""
        self._server.api.configure_rollouts(fail_images=check_fail_images(digests))
        return self

    def clear(self):
        with self._lock:
            self._rules.clear()
            self._delay = 0.0
            self._delay_method = self._delay_prefix = None
            refusing = self._refusing
        if refusing:
            self.refuse_connections(False)
        self._server.api.configure_rollouts(hold=False, rollout_seconds=0.0, fail_images=[])
        return self

    def state(self) -> dict:
        controller = self._server.api.controller
        with self._server.api.store.lock:
            rollouts = {"hold_rollouts": controller.hold, "rollout_seconds": controller.rollout_seconds,
                        "fail_images": list(controller.fail_images)}
        with self._lock:
            return {"refuse_connections": self._refusing, "delay": self._delay, "delay_method": self._delay_method,
                    "delay_path_prefix": self._delay_prefix,
                    "fail_next": [r.to_dict() for r in self._rules if r.remaining > 0], **rollouts}

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
        if not isinstance(spec, dict):
            raise ValueError("the body must be a JSON object")
        # Check the rollout switches before changing anything.
        seconds = check_rollout_seconds(spec["rollout_seconds"]) if "rollout_seconds" in spec else None
        images = check_fail_images(spec["fail_images"]) if "fail_images" in spec else None
        if spec.get("clear"):
            self.clear()
        if seconds is not None or images is not None:
            self._server.api.configure_rollouts(rollout_seconds=seconds, fail_images=images)
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
