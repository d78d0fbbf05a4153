"""The observer: watch every cluster's Hoist-managed objects and feed what happens back in seconds.

`python manage.py observe` runs one `Observer`. It holds a lease in the
database (`ObserverLease`): one process per installation watches, a second
one stands by and takes over when the first stops renewing. While it holds
the lease it keeps, per cluster and kind, a watch the way client-go's
reflector does: list (remembering the list's resourceVersion), watch from
there with bookmarks, relist on `410 Gone` or after the connection broke,
back off on errors. Handlers only record and enqueue:

- a Deployment's status → `rollout.record()` (rolling out → healthy | failed);
  a rollout that became healthy writes the ImageSource status and queues the
  dependants that follow "healthy";
- an image that is not what Hoist applied (a hand edit), any other write to
  a Hoist object that Hoist didn't make (its generation or resourceVersion
  is past what Hoist's last write returned, see `applied`), or a Hoist object
  deleted → a repair reconcile (re-applies everything, records drift);
- a relist that lacks objects Hoist applied (a cluster that came back
  empty) → a repair reconcile for each resource missing something.

Every `HOIST_OBSERVER_TICK_S` it also hands out work nobody holds: resources
left dirty (a task lost with a killed worker, a retry after a transient
failure) and resources whose next check is due (a soak time ending).

With the lease it renews the list of clusters whose every watch is in sync:
the minute sweep leaves those to the observer (nothing is re-read or
re-applied at rest) and re-applies everything on the others.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import Q
from django.utils import timezone

from environments import freeze
from environments.models import Cluster, Kind, Phase, Resource

from . import applied, guard, queue, rollout, watching
from .kube import IMAGESOURCE_API, ClusterClient, ClusterError
from .models import ObserverLease
from .reconcile import LABEL_PREFIX, claim, gate_key, publish_status, release

log = logging.getLogger(__name__)

LEASE_NAME = "observer"
LEASE_S = 15
SELECTOR = "app.kubernetes.io/managed-by=hoist"
# What is watched, and which resources must have one: a Deployment and an ImageSource
# each; a Service when the resource has ports.
WATCHED = [("apps/v1", "Deployment"), ("v1", "Service"), ("networking.k8s.io/v1", "Ingress"), ("v1", "Secret"),
           (IMAGESOURCE_API, "ImageSource")]
WATCH_TIMEOUT_S = 30
BACKOFF_S = (0.2, 0.5, 1.0, 2.0)
# A nudged resource is not nudged again sooner than this.
NUDGE_REPEAT_S = 5.0
FREEZE_CHECK_S = 2.0  # how often the leader looks for freeze windows starting or ending


def identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- the lease -------------------------------------------------------------------------------


def hold_lease(holder: str, *, seconds: float = LEASE_S, clusters: list[int] | None = None) -> bool:
    """Take or renew the observer lease; True while this process holds it. `clusters` are
    the ones it vouches for (every watch in sync); a new holder vouches for none yet."""
    now = timezone.now()
    until = now + timedelta(seconds=seconds)
    vouched = sorted(clusters or [])
    mine = ObserverLease.objects.filter(name=LEASE_NAME, holder=holder).update(expires_at=until, clusters=vouched)
    if mine:
        return True
    taken = ObserverLease.objects.filter(name=LEASE_NAME, expires_at__lt=now).update(holder=holder, expires_at=until, clusters=[])
    if taken:
        return True
    if ObserverLease.objects.filter(name=LEASE_NAME).exists():
        return False
    try:
        with transaction.atomic():
            ObserverLease.objects.create(name=LEASE_NAME, holder=holder, expires_at=until)
        return True
    except IntegrityError:
        return False  # another observer created it first


def watched_clusters(now=None) -> set[int]:
    """The clusters an observer watches in sync right now (its lease holds): the drift
    sweep leaves their resources alone."""
    lease = ObserverLease.objects.filter(name=LEASE_NAME, expires_at__gt=now or timezone.now()).first()
    return set(lease.clusters or []) if lease is not None else set()


def drop_lease(holder: str) -> None:
    ObserverLease.objects.filter(name=LEASE_NAME, holder=holder).update(expires_at=timezone.now(), clusters=[])


# --- handling what the clusters say ------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    project: str
    environment: str
    name: str


def ref_of(obj: dict) -> Ref | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    try:
        return Ref(labels[f"{LABEL_PREFIX}/project"], labels[f"{LABEL_PREFIX}/environment"], labels[f"{LABEL_PREFIX}/resource"])
    except KeyError:
        return None


def resource_for(cluster_id: int, ref: Ref) -> Resource | None:
    return (
        Resource.objects.select_related("environment__project", "environment__cluster")
        .filter(environment__cluster_id=cluster_id, environment__project__slug=ref.project,
                environment__slug=ref.environment, name=ref.name)
        .first()
    )


def _claimed(resource: Resource) -> bool:
    return resource.claimed_until is not None and resource.claimed_until > timezone.now()


class Handlers:
    """What the observer does with each event (also called directly by tests)."""

    def __init__(self):
        # resource id → (cluster id, the Deployment last seen): an informer's cache, only ever
        # as fresh as the watch; emptied for a cluster whose watch broke or that was relisted.
        self.deployments: dict[int, tuple[int, dict]] = {}
        # resource id → kind → the marker (promotions.applied) of the object last seen, "" once
        # deleted; the resources to compare with what Hoist recorded at the next tick; and
        # which resource each object belongs to (saves a query per event).
        self.seen: dict[int, dict[str, str]] = {}
        self.suspects: set[int] = set()
        self.refs: dict[tuple[int, Ref], int] = {}
        self.lock = threading.Lock()

    def deployment(self, cluster_id: int, obj: dict) -> None:
        ref = ref_of(obj)
        resource = resource_for(cluster_id, ref) if ref else None
        if resource is None or resource.kind != Kind.DEPLOYMENT:
            return
        with self.lock:
            self.deployments[resource.pk] = (cluster_id, obj)
            self.refs[(cluster_id, ref)] = resource.pk
        health = rollout.assess(obj, resource.name)
        if resource.current_image and health.image and health.image != resource.current_image:
            # Hoist's own applies carry the digest they set in an annotation; while a reconcile
            # holds the resource, an image that matches it is that reconcile's, not drift.
            annotated = ((obj.get("metadata") or {}).get("annotations") or {}).get(f"{LABEL_PREFIX}/digest", "")
            ours = bool(annotated) and health.image.endswith("@" + annotated)
            if not (ours and _claimed(resource)):
                log.info("%s runs %s, not %s: repairing", resource, health.image, resource.current_image)
                queue.enqueue_reconcile(resource.pk, repair=True)
            return
        if self._written(resource, "Deployment", applied.marker("Deployment", obj)):
            return  # someone else changed its spec (replicas, env, ...): repaired
        if _claimed(resource):
            # A reconcile holds it and records the rollout itself (rollout.record would defer
            # to it too); the watch's next event or the tick looks again after it lets go.
            return
        self.judge(resource.pk, health)

    def judge(self, resource_id: int, health: rollout.Health) -> None:
        recorded = rollout.record(resource_id, health)
        if recorded.became == rollout.HEALTHY and recorded.resource is not None:
            queue.enqueue_keep(resource_id, recorded.resource.current_image)  # keep tags: a new rollback candidate
            self._publish_healthy(recorded.resource)

    def _publish_healthy(self, resource: Resource) -> None:
        # Under a claim, like any reconcile: a worker applying something newer right now
        # must not have its ImageSource status overwritten with this older news.
        held = claim(resource.pk)
        if held is None:
            return  # the worker holding it writes the status (healthy now) and fans out itself
        try:
            resource = Resource.objects.select_related("environment__cluster", "environment__project").get(pk=resource.pk)
            with ClusterClient.for_cluster(resource.environment.cluster) as kube:
                written = publish_status(kube, resource, resource.current_image, resource.current_digest)
            # Recorded like any write of Hoist's, or the watch would take it for someone else's.
            versions = {**(resource.applied_versions or {}), "ImageSource": applied.marker("ImageSource", written)}
            Resource.objects.filter(pk=resource.pk, claim_token=held.token).update(applied_versions=versions)
        except ClusterError as exc:
            # Dependants on this cluster wait for the status; a repair writes it again.
            log.warning("could not publish the healthy status of %s: %s", resource, exc)
            queue.enqueue_reconcile(resource.pk, repair=True)
            return
        finally:
            release(resource.pk, held, done=False)
        rollout.fan_out(resource, healthy=True)

    def deleted(self, cluster_id: int, kind: str, obj: dict) -> None:
        ref = ref_of(obj)
        resource = resource_for(cluster_id, ref) if ref else None
        if resource is None or not resource.current_image:
            return
        if kind == "Deployment":
            with self.lock:
                self.deployments.pop(resource.pk, None)
        self._written(resource, kind, "", name=obj["metadata"].get("name", ""))

    def changed(self, cluster_id: int, kind: str, obj: dict) -> None:
        """A Service, Secret, Ingress or ImageSource was written: compared at the next tick
        (one query for all that changed since), not one query per event."""
        ref = ref_of(obj)
        if ref is None:
            return
        with self.lock:
            resource_id = self.refs.get((cluster_id, ref))
        if resource_id is None:
            resource = resource_for(cluster_id, ref)
            if resource is None:
                return
            resource_id = resource.pk
        with self.lock:
            self.refs[(cluster_id, ref)] = resource_id
            self.seen.setdefault(resource_id, {})[kind] = applied.marker(kind, obj)
            self.suspects.add(resource_id)

    def _written(self, resource: Resource, kind: str, seen: str, *, name: str = "") -> bool:
        """Someone else wrote (or deleted, `seen` empty) one of the resource's objects: repair
        it now; True when a repair was queued. While a reconcile holds the resource, what it
        writes is not recorded yet: look again once it lets go."""
        with self.lock:
            self.seen.setdefault(resource.pk, {})[kind] = seen
        if not resource.current_image:
            return False  # nothing applied yet: the first reconcile writes everything
        if _claimed(resource):
            with self.lock:
                self.suspects.add(resource.pk)
            return False
        if not _drifted(resource.applied_versions or {}, kind, seen):
            return False
        what = f"{kind} {resource.environment.namespace}/{name}" if name else f"the {kind} of {resource}"
        log.info("%s was %s outside Hoist: repairing", what, "deleted" if not seen else "changed")
        queue.enqueue_reconcile(resource.pk, repair=True)
        return True

    def recheck_written(self) -> None:
        """Compare what the watches saw with what Hoist recorded, for the resources written
        since the last tick or busy then; repair those someone else changed."""
        with self.lock:
            suspects = set(self.suspects)
        if not suspects:
            return
        found: set[int] = set()
        for resource in Resource.objects.filter(pk__in=suspects).only("pk", "current_image", "claimed_until",
                                                                        "applied_versions"):
            found.add(resource.pk)
            if _claimed(resource):
                continue  # still busy: its record comes first
            with self.lock:
                self.suspects.discard(resource.pk)
                seen = dict(self.seen.get(resource.pk, {}))
            recorded = resource.applied_versions or {}
            drifted = [kind for kind, marker in seen.items() if _drifted(recorded, kind, marker)]
            if resource.current_image and drifted:
                log.info("%s of resource %s changed outside Hoist: repairing", ", ".join(sorted(drifted)), resource.pk)
                queue.enqueue_reconcile(resource.pk, repair=True)
        gone = suspects - found
        if gone:  # deleted resources: forget them
            with self.lock:
                self.suspects -= gone
                for resource_id in gone:
                    self.seen.pop(resource_id, None)
                self.refs = {key: pk for key, pk in self.refs.items() if pk not in gone}

    def forget_cluster(self, cluster_id: int) -> None:
        with self.lock:
            for resource_id in [pk for pk, (cid, _) in self.deployments.items() if cid == cluster_id]:
                del self.deployments[resource_id]

    def relisted(self, cluster_id: int, kind: str, items: list[dict]) -> None:
        """After a (re)list: what Hoist applied and the cluster lacks is put back, and what
        someone else changed while nobody watched is repaired (Deployments: item by item, by
        the caller)."""
        if kind == "Deployment":
            self.forget_cluster(cluster_id)  # the list is the truth now; what it lacks is gone
        rows = Resource.objects.filter(environment__cluster_id=cluster_id, kind=Kind.DEPLOYMENT).exclude(
            current_image="").select_related("environment__project", "environment")
        by_ref = {Ref(r.environment.project.slug, r.environment.slug, r.name): r for r in rows}
        present = set()
        for item in items:
            ref = ref_of(item)
            if ref is None:
                continue
            present.add(ref)
            if kind != "Deployment" and ref in by_ref:
                with self.lock:
                    self.refs[(cluster_id, ref)] = by_ref[ref].pk
                self._written(by_ref[ref], kind, applied.marker(kind, item), name=item["metadata"].get("name", ""))
        if kind not in ("Deployment", "Service", "ImageSource"):
            return
        # Busy ones too: a repair forgets the applied config, so the reconcile running now
        # (or the next) applies everything again.
        missing = [r.pk for ref, r in by_ref.items() if ref not in present and (kind != "Service" or r.ports)]
        for resource_id in missing:
            queue.enqueue_reconcile(resource_id, repair=True)
        if missing:
            log.info("cluster %s lacks %s %s of %d resources: repairing", cluster_id, kind, "objects", len(missing))

    def recheck_rollouts(self) -> None:
        """Judge again what rolls out, from the cached Deployments: an event that came
        while a reconcile held the resource was not recorded then."""
        with self.lock:
            cached = dict(self.deployments)
        if not cached:
            return
        # What rolls out, then the cache: at rest a handful of rows (an index covers them), not a
        # list of every Deployment the watches know.
        rolling = Resource.objects.filter(phase=Phase.PROGRESSING).exclude(current_image="")
        for resource in rolling.only("pk", "name", "current_image", "claimed_until"):
            if resource.pk not in cached or _claimed(resource):
                continue
            health = rollout.assess(cached[resource.pk][1], resource.name)
            if health.image == resource.current_image:
                self.judge(resource.pk, health)


def _drifted(recorded: dict, kind: str, seen: str) -> bool:
    """Whether the object as last seen (`seen`: its marker, "" once deleted) is someone else's write."""
    if not seen:  # deleted: drift unless Hoist itself removed it (it no longer records the kind)
        return kind in recorded or not recorded
    return applied.compare(seen, recorded.get(kind, "")) == applied.OTHER


def hand_out(now=None, *, limit: int = 500) -> list[int]:
    """Queue what nobody holds and should be looked at: left dirty for a while (a lost
    task, a retry) or due (a soak ending). Returns the resource ids queued."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.HOIST_OBSERVER_NUDGE_AFTER_S)
    due = (
        Resource.objects.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .filter(Q(next_check_at__lte=now) | Q(dirty_at__lt=stale))
        # Failing transiently (a registry or cluster down): not before its backoff ends.
        .filter(Q(backoff_until__isnull=True) | Q(backoff_until__lte=now))
        .filter(Q(nudged_at__isnull=True) | Q(nudged_at__lt=now - timedelta(seconds=NUDGE_REPEAT_S)))
        .order_by("pk").values_list("pk", flat=True)[:limit]
    )
    ids = list(due)
    if ids and _backlog():
        # The workers still have queued work: a resource dirty for a few seconds is most
        # likely waiting in that queue, not lost. Handing it out again would only queue it
        # twice, and under a big fan-out re-queue thousands every few seconds. Due checks
        # still go out; dirty ones only once nothing was queued for them for a long while.
        lost = now - timedelta(seconds=settings.HOIST_OBSERVER_LOST_AFTER_S)
        ids = list(Resource.objects.filter(pk__in=ids).filter(Q(next_check_at__lte=now) | Q(dirty_at__lt=lost))
                   .order_by("pk").values_list("pk", flat=True))
    if ids:
        # A due check is consumed (the reconcile schedules the next one); the queued
        # reconcile marks the resource dirty, so a lost one is handed out again.
        Resource.objects.filter(pk__in=ids).update(nudged_at=now)
        Resource.objects.filter(pk__in=ids, next_check_at__lte=now).update(next_check_at=None)
        queue.enqueue_reconcile_many(ids)
    return ids


_broker = None


def _backlog() -> bool:
    """Whether tasks wait in the broker for a worker (django-q2's own count)."""
    global _broker
    from django_q.brokers import get_broker

    try:
        if _broker is None:
            _broker = get_broker()
        return _broker.queue_size() > 0
    except Exception:  # a broker that can't say: hand out as if idle (duplicates are harmless)
        log.debug("could not read the task queue's size", exc_info=True)
        return False


# --- the watches ---------------------------------------------------------------------------------


class Watch(threading.Thread):
    """List and watch one kind on one cluster until stopped (a reflector)."""

    def __init__(self, cluster_id: int, api_version: str, kind: str, handlers: Handlers, stop: threading.Event,
                 timeout_s: int = WATCH_TIMEOUT_S):
        super().__init__(name=f"watch-{cluster_id}-{kind}", daemon=True)
        self.cluster_id, self.api_version, self.kind = cluster_id, api_version, kind
        self.handlers, self.stopping, self.timeout_s = handlers, stop, timeout_s
        self.resource_version = ""
        self.relists = 0
        self.events = 0
        # Listed and watching from the list on: nothing this kind went through is unseen.
        self.synced = False

    def run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                cluster = Cluster.objects.filter(pk=self.cluster_id).first()
                if cluster is None:
                    return
                with ClusterClient.for_cluster(cluster) as kube:
                    if not self.resource_version:
                        self._list(kube, cluster)
                    self._watch(kube)
                failures = 0
            except ClusterError as exc:
                self.resource_version, self.synced = "", False  # after a broken connection, relist: events may be lost
                if self.kind == "Deployment":
                    self.handlers.forget_cluster(self.cluster_id)
                delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("watch of %s on cluster %s: %s (retrying in %.1f s)", self.kind, self.cluster_id, exc, delay)
                self.stopping.wait(delay)
            except Exception:  # a handler bug must not end the watch
                log.exception("watch of %s on cluster %s failed", self.kind, self.cluster_id)
                self.resource_version, self.synced = "", False
                self.stopping.wait(1.0)
            finally:
                close_old_connections()

    def _list(self, kube: ClusterClient, cluster: Cluster | None = None) -> None:
        try:
            items, self.resource_version = kube.list_versioned(self.api_version, self.kind, None, SELECTOR)
        except ClusterError as exc:
            if exc.status == 404 and self.kind == "ImageSource":
                items, self.resource_version = [], ""  # no CRD yet: nothing to watch until Hoist installs it
                self.stopping.wait(2.0)
                raise ClusterError("ImageSource CRD not installed yet", retryable=True) from None
            raise
        self.relists += 1
        if cluster is not None:
            # The cluster answered a full list: it is back, whatever its circuit breaker says.
            # Closing it now lets the repairs below run at once, not after a cooldown of up to
            # a minute that the outage's failed probes built up.
            guard.close(gate_key(cluster))
        self.handlers.relisted(self.cluster_id, self.kind, items)
        if self.kind == "Deployment":
            for item in items:
                self.handlers.deployment(self.cluster_id, item)
        self.synced = bool(self.resource_version)

    def _watch(self, kube: ClusterClient) -> None:
        for event in kube.watch(self.api_version, self.kind, None, label_selector=SELECTOR,
                                resource_version=self.resource_version, timeout_s=self.timeout_s,
                                stop=self.stopping.is_set):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                code = obj.get("code")
                log.info("watch of %s on cluster %s: %s %s; relisting", self.kind, self.cluster_id, code, obj.get("reason"))
                self.resource_version, self.synced = "", False  # 410 Gone: too old to resume from
                return
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv:
                self.resource_version = str(rv)
            if kind == "BOOKMARK":
                continue
            self.events += 1
            if kind == "DELETED":
                self.handlers.deleted(self.cluster_id, self.kind, obj)
            elif self.kind == "Deployment":
                self.handlers.deployment(self.cluster_id, obj)
            else:
                self.handlers.changed(self.cluster_id, self.kind, obj)
            close_old_connections()


class Observer:
    """One observer process: the lease, a watch per cluster and kind, and the tick."""

    def __init__(self, *, holder: str | None = None, tick_s: float | None = None, watch_timeout_s: int = WATCH_TIMEOUT_S):
        self.holder = holder or identity()
        self.watch_timeout_s = watch_timeout_s
        self.tick_s = tick_s if tick_s is not None else settings.HOIST_OBSERVER_TICK_S
        self.handlers = Handlers()
        self.stop = threading.Event()
        self.watches: dict[tuple[int, str], Watch] = {}
        self._watch_stop = threading.Event()
        self.leading = False
        # The leader also watches registry tags (for registries that send no webhooks).
        self.tag_watcher: watching.Watcher | None = None
        self.freeze_checked = 0.0

    def run(self) -> None:
        renew_at = 0.0
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if now >= renew_at:
                    leading = hold_lease(self.holder, clusters=self.in_sync() if self.leading else [])
                    renew_at = now + LEASE_S / 3
                    if leading != self.leading:
                        log.info("observer %s %s", self.holder, "leads" if leading else "stands by")
                        if not leading:
                            self._stop_watches()
                            self._stop_tag_watcher()
                        self.leading = leading
                    if leading:
                        self._sync_watches()
                        self._start_tag_watcher()
                if self.leading:
                    self.tick()
                close_old_connections()
                self.stop.wait(self.tick_s)
        finally:
            self._stop_watches()
            self._stop_tag_watcher()
            if self.leading:
                drop_lease(self.holder)
            close_old_connections()

    def tick(self) -> None:
        try:
            hand_out()
            self.handlers.recheck_rollouts()
            self.handlers.recheck_written()
            if time.monotonic() >= self.freeze_checked + FREEZE_CHECK_S:  # freeze windows starting and ending
                self.freeze_checked = time.monotonic()
                freeze.refresh()
        except Exception:
            log.exception("observer tick failed")

    def in_sync(self) -> list[int]:
        """The clusters whose every watch is running and in sync."""
        kinds: dict[int, int] = {}
        for (cluster_id, _), watch in list(self.watches.items()):
            if watch.is_alive() and watch.synced:
                kinds[cluster_id] = kinds.get(cluster_id, 0) + 1
        return [cluster_id for cluster_id, count in kinds.items() if count == len(WATCHED)]

    def _sync_watches(self) -> None:
        clusters = set(Cluster.objects.values_list("pk", flat=True))
        for key, watch in list(self.watches.items()):
            if key[0] not in clusters or not watch.is_alive():
                del self.watches[key]
        for cluster_id in clusters:
            for api_version, kind in WATCHED:
                if (cluster_id, kind) not in self.watches:
                    watch = Watch(cluster_id, api_version, kind, self.handlers, self._watch_stop, self.watch_timeout_s)
                    self.watches[(cluster_id, kind)] = watch
                    watch.start()

    def _start_tag_watcher(self) -> None:
        if self.tag_watcher is None or not self.tag_watcher.is_alive():
            self.tag_watcher = watching.Watcher()
            self.tag_watcher.start()

    def _stop_tag_watcher(self) -> None:
        if self.tag_watcher is not None:
            self.tag_watcher.stop.set()
            self.tag_watcher.join_all(timeout=2.0)
            self.tag_watcher = None

    def _stop_watches(self) -> None:
        self._watch_stop.set()
        # A watch notices between events (or at the server's timeout); daemon threads
        # never hold the process up, so don't wait long for them.
        deadline = time.monotonic() + 2.0
        for watch in self.watches.values():
            watch.join(timeout=max(0.0, deadline - time.monotonic()))
        self.watches.clear()
        self._watch_stop = threading.Event()
