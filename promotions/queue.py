"""Asking for engine work: django-q2 tasks enqueued on commit, by dotted name.

`transaction.on_commit` so a worker never looks for a row the request hasn't
committed yet. The task bodies are in `promotions.tasks`.

Every request also marks the resource dirty (`Resource.dirty_at`) in the
same transaction: a task can be lost (a worker killed mid-task, a broker
that drops it), a dirty mark can't. The reconcile clears it when it has
recorded; the observer hands out again what stays dirty and unclaimed.
"""

from __future__ import annotations

import math

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from environments.models import Resource

# A fan-out is cut into one chunk per worker (each applies its chunk's Deployments before the
# rest of their reconciles, so all workers together send every Deployment first), of at most
# this many resources: a bigger fan-out is shared by more tasks, and so by more worker
# machines when several take from the queue.
MAX_CHUNK = 250


def mark_dirty(resource_ids: list[int]) -> None:
    if resource_ids:
        Resource.objects.filter(pk__in=resource_ids).update(dirty_at=timezone.now())


def enqueue_reconcile(resource_id: int, *, repair: bool = False) -> None:
    """Reconcile one resource; `repair` re-applies every object and records drift (as the sweep does).

    A repair also forgets the applied config's fingerprint, so whichever reconcile runs
    next (this task, or another worker's that holds the resource now) applies every
    object again: a repair asked for while the resource is busy is not lost.
    """
    if repair:
        Resource.objects.filter(pk=resource_id).update(config_hash="")
    mark_dirty([resource_id])
    transaction.on_commit(
        lambda: async_task("promotions.tasks.reconcile_resource", resource_id, repair,
                           task_name=f"reconcile-{resource_id}", group="repair" if repair else "reconcile")
    )


def chunks(resource_ids: list[int]) -> list[list[int]]:
    workers = max(1, int(settings.Q_CLUSTER.get("workers", 1)))
    size = max(1, min(MAX_CHUNK, math.ceil(len(resource_ids) / workers)))
    return [list(resource_ids[start:start + size]) for start in range(0, len(resource_ids), size)]


def enqueue_reconcile_many(resource_ids: list[int]) -> None:
    """Queue a fan-out in a few chunks rather than one task per resource.

    Each task carries its own queue round trip (insert, poll, lock, result
    row); with 100 track-latest dependants that overhead, not the reconciles,
    would dominate. One chunk per worker keeps every worker busy, and lets
    each send all its Deployments before finishing any reconcile
    (promotions.tasks): smaller chunks taken one after another would hold a
    later chunk's Deployments back behind the whole of the earlier ones.
    """
    mark_dirty(resource_ids)
    for chunk in chunks(resource_ids):
        transaction.on_commit(
            lambda chunk=chunk: async_task("promotions.tasks.reconcile_resources", chunk, group="reconcile")
        )


def enqueue_keep(resource_id: int, image: str = "") -> None:
    """Keep what the resource needs now in the registries (promotions.keeping): a digest just
    applied, just healthy, or pinned. Releasing what it no longer needs is the schedule's.

    `image`: what it pulls. When that registry is not one Hoist pushes keep tags to, nothing is
    queued (a fan-out must not double its tasks for nothing); the schedule records such digests
    as unprotected within minutes.
    """
    if image and not _protects(image):
        return
    transaction.on_commit(
        lambda: async_task("promotions.tasks.keep_resource", resource_id, task_name=f"keep-{resource_id}", group="keep")
    )


def enqueue_cleanup(cluster_id: int, namespace: str, project: str, environment: str, resource: str) -> None:
    transaction.on_commit(
        lambda: async_task(
            "promotions.tasks.cleanup_resource", cluster_id, namespace, project, environment, resource,
            task_name=f"cleanup-{project}-{environment}-{resource}", group="cleanup",
        )
    )


def _protects(image: str) -> bool:
    from environments.references import InvalidReference, parse_reference

    from . import limits

    try:
        host = parse_reference(image).registry
    except InvalidReference:
        return True  # let the task say what is wrong
    return limits.limits_for(host).protect
