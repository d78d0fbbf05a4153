"""A fake deployment controller.

Real clusters update Deployment status asynchronously after ReplicaSets and
Pods come up; callers poll `status.observedGeneration`, `updatedReplicas`,
`availableReplicas` and the `Available`/`Progressing` conditions. Here every
status change is a separate write (own resourceVersion and watch event, made
by "kube-controller-manager") through `sync()`:

* By default (`rollout_seconds == 0`) status follows spec at once: the status
  write happens right after each spec write.
* With `rollout_seconds = S > 0` each new pod template (a new ReplicaSet; also
  a brand-new Deployment) is rolled out over S seconds, one new pod per step:
  step k of N happens k*S/N seconds after the template change. A background
  daemon thread (`sandbox-rollouts`) wakes at the next step time and writes
  the status. Spec changes that keep the template (scaling, annotations)
  complete at once.
* A template whose container image contains a digest in `fail_images` never
  becomes available; once `spec.progressDeadlineSeconds` have passed (counted
  from the later of the rollout start and the time the digest was listed),
  `Progressing` turns False with `ProgressDeadlineExceeded`.
* `hold` simulates pods that never become ready (no deadline).

Locking: all controller state is guarded by the store lock (every caller of
`sync`/`configure`/`reset` holds it). The scheduler's own condition `_wake`
only guards `_due`/`_thread`/`_stopped`; it is taken after the store lock,
never the other way round.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time

from . import apply as ssa
from .util import clone

log = logging.getLogger("sandbox")

REVISION = "deployment.kubernetes.io/revision"
_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MANAGER = "kube-controller-manager"
DEFAULT_PROGRESS_DEADLINE = 600


def _now_ts() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def template_hash(template) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_HASH_ALPHABET[b % len(_HASH_ALPHABET)] for b in digest[:10])


def _condition(type_, status, reason, message, now, previous):
    for cond in previous:
        if cond.get("type") == type_ and cond.get("status") == status:
            transition = cond.get("lastTransitionTime", now)
            break
    else:
        transition = now
    return {"type": type_, "status": status, "lastUpdateTime": now, "lastTransitionTime": transition,
            "reason": reason, "message": message}


def _int(value, default=0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _scaled(value, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = int(value[:-1])
        except ValueError:
            return 0
        scaled = pct * total
        return -(-scaled // 100) if round_up else scaled // 100
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return 0
    return _int(value)


def max_unavailable(spec: dict, replicas: int) -> int:
    """deploymentutil.MaxUnavailable: 0 for Recreate or zero replicas, else the resolved fencepost."""
    strategy = spec.get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate" or replicas == 0:
        return 0
    ru = strategy.get("rollingUpdate") or {}
    surge = _scaled(ru.get("maxSurge", "25%"), replicas, True)
    unavailable = _scaled(ru.get("maxUnavailable", "25%"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return min(unavailable, replicas)


def template_images(template) -> list:
    pod = (template or {}).get("spec") or {}
    return [c.get("image") for c in (pod.get("containers") or []) + (pod.get("initContainers") or [])
            if isinstance(c, dict) and isinstance(c.get("image"), str)]


class Rollout:
    """One pod template of one deployment (a ReplicaSet) being rolled out."""

    __slots__ = ("namespace", "name", "thash", "revision", "images", "started", "seconds", "old_available",
                 "first", "pods_created")

    def __init__(self, namespace, name, thash, revision, images, started, seconds, old_available, first):
        self.namespace, self.name, self.thash, self.revision = namespace, name, thash, revision
        self.images = images
        self.started = started  # time.monotonic() when this template's rollout (re)started
        self.seconds = seconds  # duration captured at the start
        self.old_available = old_available  # available pods of the previous template(s) at the start
        self.first = first  # the first rollout of a brand-new deployment
        self.pods_created = False  # released from hold/fail_images: all new pods exist, they turn ready one by one


class DeploymentController:
    def __init__(self, api=None):
        self._api = api
        self.hold = False
        self.rollout_seconds = 0.0
        self.fail_images: dict = {}  # digest -> time.monotonic() when it was put on the list
        self.rollouts: dict = {}  # deployment uid -> Rollout
        # scheduler (guarded by _wake)
        self._wake = threading.Condition(threading.Lock())
        self._due: dict = {}  # uid -> time.monotonic() of the next status change
        self._thread = None
        self._stopped = False

    # -- settings (caller holds the store lock) ------------------------------
    def reset(self):
        self.hold = False
        self.rollout_seconds = 0.0
        self.fail_images = {}
        self.rollouts.clear()
        with self._wake:
            self._due.clear()  # pending steps are dropped; an idle scheduler thread exits
            self._wake.notify_all()

    def configure(self, hold=None, rollout_seconds=None, fail_images=None) -> bool:
        """Change rollout switches; True when deployments need a resync."""
        changed = False
        if rollout_seconds is not None and float(rollout_seconds) != self.rollout_seconds:
            # Running rollouts keep the duration they started with; 0 finishes them at once.
            self.rollout_seconds = float(rollout_seconds)
            changed = True
        stuck = [r for r in self.rollouts.values() if self._stuck(r)]
        if hold is not None and bool(hold) != self.hold:
            self.hold = bool(hold)
            changed = True
        now = time.monotonic()
        if fail_images is not None:
            new = {d: self.fail_images.get(d, now) for d in fail_images}
            if list(new) != list(self.fail_images):
                self.fail_images = new
                changed = True
        for r in stuck:
            if not self._stuck(r):
                # Released (unlisted / hold off): the stuck pods become ready, with rollout_seconds timing.
                r.started, r.seconds, r.old_available, r.pods_created = now, self.rollout_seconds, 0, True
        return changed

    def forget_missing(self, uids):
        """Drop rollouts of deployments that no longer exist."""
        for uid in [u for u in self.rollouts if u not in uids]:
            del self.rollouts[uid]
            self._schedule(uid, None)

    # -- status computation ---------------------------------------------------
    def _stuck(self, r: Rollout) -> bool:
        return self.hold or self._failing_since(r) is not None

    def _failing_since(self, r: Rollout):
        listed = [t for d, t in self.fail_images.items() if any(d in image for image in r.images)]
        return max(r.started, min(listed)) if listed else None

    def _rollout_for(self, dep: dict, mono: float) -> Rollout:
        spec = dep.get("spec") or {}
        meta = dep["metadata"]
        template = spec.get("template")
        thash = template_hash(template)
        prev = self.rollouts.get(meta["uid"])
        if prev is not None and prev.thash == thash:
            return prev
        available = _int((dep.get("status") or {}).get("availableReplicas")) if prev is not None else 0
        r = Rollout(meta.get("namespace", ""), meta["name"], thash, (prev.revision if prev else 0) + 1,
                    template_images(template), mono, self.rollout_seconds, available,
                    prev is None or (prev.first and available == 0))
        self.rollouts[meta["uid"]] = r
        return r

    def desired(self, dep: dict, now: str, mono: float | None = None):
        """Return (annotations, status, next_change) the controller wants for this deployment
        at time.monotonic() `mono`; next_change is when the status changes again (or None)."""
        mono = time.monotonic() if mono is None else mono
        spec = dep.get("spec") or {}
        meta = dep["metadata"]
        replicas = _int(spec.get("replicas"), 1)
        r = self._rollout_for(dep, mono)
        annotations = dict(meta.get("annotations") or {})
        annotations[REVISION] = str(r.revision)
        rs_name = f'{meta["name"]}-{r.thash}'
        previous = (dep.get("status") or {}).get("conditions") or []
        status = {"observedGeneration": meta.get("generation", 1)}
        progressing = _condition("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.',
                                 now, previous)
        unavailable = _condition("Available", "False", "MinimumReplicasUnavailable",
                                 "Deployment does not have minimum availability.", now, previous)
        failing_since = self._failing_since(r) if replicas > 0 else None
        if failing_since is not None or (self.hold and replicas > 0):
            # Pods of this template never become ready.
            status.update(replicas=replicas, updatedReplicas=replicas, unavailableReplicas=replicas)
            next_change = None
            if failing_since is not None:
                deadline = failing_since + _int(spec.get("progressDeadlineSeconds"), DEFAULT_PROGRESS_DEADLINE)
                if mono >= deadline:
                    progressing = _condition("Progressing", "False", "ProgressDeadlineExceeded",
                                             f'ReplicaSet "{rs_name}" has timed out progressing.', now, previous)
                else:
                    next_change = deadline
            status["conditions"] = [unavailable, progressing]
            return annotations, status, next_change

        seconds = r.seconds if self.rollout_seconds > 0 else 0.0
        elapsed = mono - r.started
        next_change = None
        if replicas == 0 or seconds <= 0 or elapsed >= seconds:
            ready = replicas
        else:  # one new pod comes up (updated and available) per step, steps spread evenly over `seconds`
            ready = min(replicas, int(elapsed * replicas / seconds + 1e-9))
            if ready < replicas:
                next_change = max(r.started + (ready + 1) * seconds / replicas, mono + 0.001)
        updated = replicas if r.pods_created else ready
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        old = 0 if recreate else max(0, min(r.old_available, replicas - updated))
        available = ready + old
        # zero counters are omitted, as the real (omitempty) status does
        for key, value in (("replicas", updated + old), ("updatedReplicas", updated), ("readyReplicas", available),
                           ("availableReplicas", available), ("unavailableReplicas", replicas - available)):
            if value > 0:
                status[key] = value
        if available >= replicas - max_unavailable(spec, replicas) and not (r.first and available == 0
                                                                           and replicas > 0):
            avail = _condition("Available", "True", "MinimumReplicasAvailable",
                               "Deployment has minimum availability.", now, previous)
        else:
            avail = unavailable
        if ready == replicas:
            progressing = _condition("Progressing", "True", "NewReplicaSetAvailable",
                                     f'ReplicaSet "{rs_name}" has successfully progressed.', now, previous)
        status["conditions"] = [avail, progressing]
        return annotations, status, next_change

    def sync(self, api, rt, dep: dict, now: str):
        """Write status (and the revision annotation) for one stored deployment; schedule its next step."""
        self._api = api
        annotations, status, next_change = self.desired(dep, now)
        self._schedule(dep["metadata"]["uid"], next_change)
        current = dep.get("status") or {}

        def strip(st):
            st = clone(st)
            for cond in st.get("conditions") or []:
                cond.pop("lastUpdateTime", None)
                cond.pop("lastTransitionTime", None)
            return st

        if (dep["metadata"].get("annotations") or {}) == annotations and strip(current) == strip(status):
            return dep
        node = rt.root_node()
        # New metadata and status; spec and the rest are shared with `dep`, a stored object,
        # which nothing changes in place (track_update writes managedFields into the new
        # metadata only).
        updated = {**dep, "metadata": {**dep["metadata"], "annotations": annotations}}
        ssa.track_update(dep, updated, MANAGER, node, "main", "", rt.api_version, now)
        final = {**updated, "metadata": dict(updated["metadata"]), "status": status}
        ssa.track_update(updated, final, MANAGER, node, "status", "status", rt.api_version, now)
        return api.store.put(rt.store_key, final, owned=True, copy=False)  # `final` is ours; callers only read

    # -- scheduler -------------------------------------------------------------
    def _schedule(self, uid, when):
        with self._wake:
            if when is None:
                if self._due.pop(uid, None) is None:
                    return
            else:
                self._due[uid] = when
                if self._thread is None and not self._stopped:
                    self._thread = threading.Thread(target=self._run, name="sandbox-rollouts", daemon=True)
                    self._thread.start()
            self._wake.notify_all()

    def _run(self):
        me = threading.current_thread()
        while True:
            with self._wake:
                while True:
                    if self._stopped or not self._due or self._thread is not me:
                        if self._thread is me:
                            self._thread = None
                        return
                    wait = min(self._due.values()) - time.monotonic()
                    if wait <= 0:
                        break
                    self._wake.wait(wait)
                now = time.monotonic()
                due = [uid for uid, when in self._due.items() if when <= now]
            try:
                self._tick(due)
            except Exception:  # a sandbox bug: never spin on it
                log.exception("sandbox: rollout step failed")
                with self._wake:
                    for uid in due:
                        self._due.pop(uid, None)

    def _tick(self, uids):
        api = self._api
        with api.store.lock:
            if self._stopped:
                return
            rt = api.registry.lookup("apps", "v1", "deployments")
            for uid in uids:
                with self._wake:
                    if uid not in self._due or self._due[uid] > time.monotonic():
                        continue  # rescheduled or dropped (reset, new spec write) meanwhile
                r = self.rollouts.get(uid)
                dep = api.store.get(rt.store_key, r.namespace, r.name) if r is not None else None
                if dep is None or dep["metadata"]["uid"] != uid:
                    self.rollouts.pop(uid, None)
                    self._schedule(uid, None)
                    continue
                self.sync(api, rt, dep, _now_ts())

    def stop(self, timeout: float = 5.0):
        """Stop the scheduler thread (server shutdown). Call without holding the store lock."""
        with self._wake:
            self._stopped = True
            thread, self._thread = self._thread, None
            self._wake.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def resume(self):
        """Allow the scheduler again (server start); pending steps continue."""
        with self._wake:
            self._stopped = False
            if self._due and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sandbox-rollouts", daemon=True)
                self._thread.start()
