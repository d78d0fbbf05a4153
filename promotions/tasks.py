"""django-q2 tasks: thin wrappers that take ids and call reconcile functions.

Enqueued by `promotions.queue` (on commit) and by the drift sweep schedule.
"""

from __future__ import annotations

import logging

from django_q.tasks import async_task

from environments.models import Resource

from . import reconcile
from .queue import chunks

log = logging.getLogger(__name__)


def reconcile_resource(resource_id: int, sweep: bool = False) -> None:
    reconcile.reconcile_resource(resource_id, sweep=sweep)


def reconcile_resources(resource_ids: list[int], sweep: bool = False) -> None:
    batch = reconcile.Batch()
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
