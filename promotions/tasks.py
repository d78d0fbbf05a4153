"""django-q2 tasks: thin wrappers that take ids and call reconcile functions.

Enqueued by `promotions.queue` (on commit) and by the drift sweep schedule.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import connection, connections
from django_q.tasks import async_task

from environments.models import Resource

from . import keeping, reconcile
from .queue import chunks

log = logging.getLogger(__name__)


def reconcile_resource(resource_id: int, sweep: bool = False) -> None:
    reconcile.reconcile_resource(resource_id, sweep=sweep)


def reconcile_resources(resource_ids: list[int], sweep: bool = False) -> None:
    """A chunk of a fan-out. A reconcile mostly waits (on the cluster, the database), so a
    worker runs its chunk on HOIST_RECONCILE_THREADS threads; each thread has its own
    database connection, closed when its share is done."""
    batch = reconcile.Batch()
    threads = min(len(resource_ids), _threads())
    if threads <= 1:
        _reconcile_each(resource_ids, sweep, batch)
        return
    shares = [resource_ids[n::threads] for n in range(threads)]  # interleaved: the first ids go first
    workers = [threading.Thread(target=_reconcile_share, args=(share, sweep, batch), name=f"reconcile-{n}")
               for n, share in enumerate(shares)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _threads() -> int:
    # Threads need a connection each that sees committed rows: not inside a transaction
    # (tests run in one), and not on SQLite, which locks the whole database per writer.
    if connection.vendor == "sqlite" or connection.in_atomic_block:
        return 1
    return max(1, settings.HOIST_RECONCILE_THREADS)


def _reconcile_share(resource_ids: list[int], sweep: bool, batch: reconcile.Batch) -> None:
    try:
        _reconcile_each(resource_ids, sweep, batch)
    finally:
        connections.close_all()  # this thread's own connections


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
    """The periodic drift sweep: queue a reconcile for every resource."""
    ids = list(Resource.objects.order_by("pk").values_list("pk", flat=True))
    for chunk in chunks(ids):
        async_task("promotions.tasks.reconcile_resources", chunk, True, group="drift")
    return len(ids)


def keep_resource(resource_id: int) -> dict:
    return keeping.keep_resource(resource_id).as_dict()


def sync_keeps() -> dict:
    """The keep-tags schedule: keep what is needed in the registries, release the rest."""
    return keeping.sync().as_dict()
