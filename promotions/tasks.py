"""django-q2 tasks: thin wrappers that take ids and call reconcile functions.

Enqueued by `promotions.queue` (on commit) and by the drift sweep schedule.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections, connection, connections
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from environments.models import Resource

from . import keeping, observer, queue, reconcile
from .queue import chunks

log = logging.getLogger(__name__)


def reconcile_resource(resource_id: int, sweep: bool = False) -> None:
    reconcile.reconcile_resource(resource_id, sweep=sweep)


def reconcile_resources(resource_ids: list[int], sweep: bool = False) -> None:
    """A chunk of a fan-out. A reconcile mostly waits (on the cluster, the database), so a
    worker runs its chunk on HOIST_RECONCILE_THREADS threads: the process's own pool, whose
    threads keep their database connections from one chunk to the next (as the worker's
    main thread does, CONN_MAX_AGE), instead of opening new ones for every chunk.

    A chunk whose clusters are slow may not fit the task's time limit: once a third of it is
    spent, what has not been started is queued as a chunk of its own."""
    batch = reconcile.Batch()
    deadline = time.monotonic() + _budget()
    threads = min(len(resource_ids), _threads())
    if threads <= 1 or getattr(_share, "running", False):
        # One thread; or a chunk queued from inside a share (django-q's sync mode runs a task
        # where it is queued): waiting on the pool from one of its own threads could wait forever.
        left = _reconcile_each(resource_ids, sweep, batch, deadline)
    else:
        shares = [resource_ids[n::threads] for n in range(threads)]  # interleaved: the first ids go first
        pool = _pool(_threads())
        futures = [pool.submit(_reconcile_share, share, sweep, batch, deadline) for share in shares]
        left = [resource_id for done in futures for resource_id in done.result()]
    if left:
        later = set(left)
        async_task("promotions.tasks.reconcile_resources", [pk for pk in resource_ids if pk in later], sweep,
                   group="drift" if sweep else "reconcile")


def _budget() -> float:
    """Seconds a chunk may spend starting reconciles: a third of the task's time limit, as
    what it started still has to be finished (their second steps are about twice the work)."""
    timeout = settings.Q_CLUSTER.get("timeout")
    return timeout / 3 if timeout else float("inf")


_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_share = threading.local()
_pools_lock = threading.Lock()


def _pool(size: int) -> ThreadPoolExecutor:
    """This process's reconcile threads (made after the worker process forked: keyed by pid)."""
    key = (os.getpid(), size)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="reconcile")
        return pool


def close_pool_connections() -> None:
    """Close the database connections this process's reconcile threads keep (tests; a shutdown)."""
    for (pid, size), pool in list(_pools.items()):
        if pid != os.getpid():
            continue
        everyone = threading.Barrier(size)  # one job per thread: each waits until all have one

        def close():
            everyone.wait(timeout=30)
            connections.close_all()

        for done in [pool.submit(close) for _ in range(size)]:
            done.result()


def _threads() -> int:
    # Threads need a connection each that sees committed rows: not inside a transaction
    # (tests run in one), and not on SQLite, which locks the whole database per writer.
    if connection.vendor == "sqlite" or connection.in_atomic_block:
        return 1
    return max(1, settings.HOIST_RECONCILE_THREADS)


def _reconcile_share(resource_ids: list[int], sweep: bool, batch: reconcile.Batch, deadline: float) -> list[int]:
    # As between two requests: a connection past its age or broken is closed (the next
    # query opens one); a healthy one is kept for the next chunk.
    close_old_connections()
    _share.running = True
    try:
        return _reconcile_each(resource_ids, sweep, batch, deadline)
    finally:
        _share.running = False
        close_old_connections()


# Times a share starts again a resource that changed while the share held it (the next
# publish, whose own task found it held), before leaving it to the queue: a publish every few
# hundred milliseconds must not keep one task forever.
RESTARTS = 2


def _reconcile_each(resource_ids: list[int], sweep: bool, batch: reconcile.Batch,
                    deadline: float = float("inf")) -> list[int]:
    return _Share(sweep, batch, deadline).run(resource_ids)


class _Share:
    """One thread's share of a chunk, reconciled in two steps (reconcile.reconcile_steps):
    every Deployment first, then the rest of each reconcile, so what a fan-out changes
    reaches the cluster sooner: with one chunk per worker, the last Deployment of a fan-out
    goes out about halfway through its work (the second steps are the larger part).

    A reconcile between its two steps holds its claim. The share keeps all those claims
    alive in one statement (reconcile.renew) whenever the oldest is a quarter of its lease
    old, so a worker killed meanwhile still gives them up within a lease; one another worker
    took meanwhile stops before writing anything. One that changed while held is started
    again as soon as it is finished, its Deployment first again, rather than queued as a
    task of its own."""

    def __init__(self, sweep: bool, batch: reconcile.Batch, deadline: float):
        self.sweep, self.batch, self.deadline = sweep, batch, deadline
        self.waiting: list = []  # (resource id, its steps, its `again`, restarts so far)
        self.held: dict[int, reconcile.Claim] = {}  # the claims of those waiting, by resource id
        self.oldest = None  # when the oldest of those claims was taken or last renewed

    def run(self, resource_ids: list[int]) -> list[int]:
        """Reconcile; the ids not started because the deadline passed."""
        left: list[int] = []
        for n, resource_id in enumerate(resource_ids):
            if n and time.monotonic() > self.deadline:
                left = resource_ids[n:]
                break
            self._start(resource_id, self.batch, 0)
        while self.waiting:
            self._finish()
        return left

    def _start(self, resource_id: int, batch: reconcile.Batch, restarts: int) -> None:
        again: list[int] = []
        steps = reconcile.reconcile_steps(resource_id, sweep=self.sweep, batch=batch, again=again)
        held = _step(resource_id, steps)
        if held is _ENDED:
            self._ended(resource_id, again, restarts, batch)
        else:
            self.waiting.append((resource_id, steps, again, restarts))
            if not self.held:
                self.oldest = held.renewed or held.started
            self.held[resource_id] = held
        self._keep_alive()

    def _keep_alive(self) -> None:
        if self.held and (timezone.now() - self.oldest).total_seconds() > settings.HOIST_RECONCILE_LEASE_S / 4:
            for resource_id in reconcile.renew(self.held):  # taken meanwhile: it stops when resumed
                del self.held[resource_id]
            self.oldest = timezone.now()

    def _finish(self) -> None:
        waiting, self.waiting = self.waiting, []
        batch = self.batch.renewed()  # for those started again: what they read may have changed
        for resource_id, steps, again, restarts in waiting:
            self._keep_alive()
            self.held.pop(resource_id, None)
            while _step(resource_id, steps) is not _ENDED:
                pass
            self._ended(resource_id, again, restarts, batch)

    def _ended(self, resource_id: int, again: list[int], restarts: int, batch: reconcile.Batch) -> None:
        if not again:
            return
        if restarts < RESTARTS:
            self._start(resource_id, batch if batch is not self.batch else self.batch.renewed(), restarts + 1)
        else:
            queue.enqueue_reconcile(resource_id)


_ENDED = object()


def _step(resource_id: int, steps):
    """Run a reconcile's next step: the claim it holds while it waits for the next, or _ENDED."""
    try:
        return next(steps)
    except StopIteration:
        return _ENDED
    except Exception as exc:  # one broken resource must not starve the rest of its batch
        log.exception("reconcile of resource %s failed unexpectedly", resource_id)
        reconcile.record_failure(resource_id, exc, attempt=1, final=True)
        return _ENDED


def cleanup_resource(cluster_id: int, namespace: str, project: str, environment: str, resource: str) -> None:
    reconcile.cleanup_resource(cluster_id, namespace, project, environment, resource)


def reconcile_all() -> int:
    """The periodic drift sweep: queue a re-apply of every resource the observer doesn't watch.

    On a cluster whose every watch is in sync (`observer.watched_clusters`) the observer
    sees each write someone else makes and repairs it in seconds, so the sweep leaves those
    resources alone; at rest it reads and writes nothing there. It still takes, once, a
    resource applied before Hoist recorded its writes (`applied_versions` empty). Where no
    observer runs, or a cluster's watch is down, it re-applies everything, as before.
    """
    resources = Resource.objects.all()
    watched = observer.watched_clusters()
    if watched:
        resources = resources.filter(~Q(environment__cluster_id__in=watched)
                                     | (Q(applied_versions={}) & ~Q(current_image="")))
    ids = list(resources.order_by("pk").values_list("pk", flat=True))
    for chunk in chunks(ids):
        async_task("promotions.tasks.reconcile_resources", chunk, True, group="drift")
    return len(ids)


def keep_resource(resource_id: int) -> dict:
    return keeping.keep_resource(resource_id).as_dict()


def sync_keeps() -> dict:
    """The keep-tags schedule: keep what is needed in the registries, release the rest."""
    return keeping.sync().as_dict()
