"""django-q2 tasks: thin wrappers that take ids and call reconcile functions.

Enqueued by `promotions.queue` (on commit) and by the drift sweep schedule.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Q
from django_q.tasks import async_task

from environments.models import Resource

from . import keeping, observer, reconcile
from .queue import chunks

log = logging.getLogger(__name__)


def reconcile_resource(resource_id: int, sweep: bool = False) -> None:
    reconcile.reconcile_resource(resource_id, sweep=sweep)


def reconcile_resources(resource_ids: list[int], sweep: bool = False) -> None:
    """A chunk of a fan-out. A reconcile mostly waits (on the cluster, the database), so a
    worker runs its chunk on HOIST_RECONCILE_THREADS threads: the process's own pool, whose
    threads keep their database connections from one chunk to the next (as the worker's
    main thread does, CONN_MAX_AGE), instead of opening new ones for every chunk."""
    batch = reconcile.Batch()
    threads = min(len(resource_ids), _threads())
    if threads <= 1 or getattr(_share, "running", False):
        # One thread; or a chunk queued from inside a share (django-q's sync mode runs a task
        # where it is queued): waiting on the pool from one of its own threads could wait forever.
        _reconcile_each(resource_ids, sweep, batch)
        return
    shares = [resource_ids[n::threads] for n in range(threads)]  # interleaved: the first ids go first
    pool = _pool(_threads())
    for done in [pool.submit(_reconcile_share, share, sweep, batch) for share in shares]:
        done.result()


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


def _threads() -> int:
    # Threads need a connection each that sees committed rows: not inside a transaction
    # (tests run in one), and not on SQLite, which locks the whole database per writer.
    if connection.vendor == "sqlite" or connection.in_atomic_block:
        return 1
    return max(1, settings.HOIST_RECONCILE_THREADS)


def _reconcile_share(resource_ids: list[int], sweep: bool, batch: reconcile.Batch) -> None:
    # As between two requests: a connection past its age or broken is closed (the next
    # query opens one); a healthy one is kept for the next chunk.
    close_old_connections()
    _share.running = True
    try:
        _reconcile_each(resource_ids, sweep, batch)
    finally:
        _share.running = False
        close_old_connections()


def _reconcile_each(resource_ids: list[int], sweep: bool, batch: reconcile.Batch) -> None:
    for resource_id in resource_ids:
        try:
            reconcile.reconcile_resource(resource_id, sweep=sweep, batch=batch)
        except Exception as exc:  # one broken resource must not starve the rest of its batch
            log.exception("reconcile of resource %s failed unexpectedly", resource_id)
            reconcile.record_failure(resource_id, exc, attempt=1, final=True)


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
