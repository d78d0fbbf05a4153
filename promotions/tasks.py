"""django-q2 tasks: thin wrappers that take ids and call reconcile functions.

Tasks are enqueued with transaction.on_commit so a worker never looks for a
row the request hasn't committed yet.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django_q.tasks import async_task

log = logging.getLogger(__name__)


def enqueue_reconcile(resource_id: int) -> None:
    transaction.on_commit(
        lambda: async_task("promotions.tasks.reconcile_resource", resource_id, task_name=f"reconcile-{resource_id}", group="reconcile")
    )


def enqueue_cleanup(cluster_id: int, namespace: str, project: str, environment: str, resource: str) -> None:
    transaction.on_commit(
        lambda: async_task(
            "promotions.tasks.cleanup_resource", cluster_id, namespace, project, environment, resource,
            task_name=f"cleanup-{project}-{environment}-{resource}", group="cleanup",
        )
    )


def reconcile_resource(resource_id: int, sweep: bool = False) -> None:
    from . import reconcile

    reconcile.reconcile_resource(resource_id, sweep=sweep)


def cleanup_resource(cluster_id: int, namespace: str, project: str, environment: str, resource: str) -> None:
    from . import reconcile

    reconcile.cleanup_resource(cluster_id, namespace, project, environment, resource)


def reconcile_all() -> int:
    """The periodic drift sweep: queue a reconcile for every resource."""
    from environments.models import Resource

    ids = list(Resource.objects.values_list("pk", flat=True))
    for resource_id in ids:
        async_task("promotions.tasks.reconcile_resource", resource_id, True, group="drift")
    return len(ids)
