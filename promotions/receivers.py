"""The engine's side of `environments.signals`: record what will change, queue the work.

Connected in `PromotionsConfig.ready()`. These run inside the transaction of
the write that sent the signal, so a queued Promotion exists exactly when
the write committed, and the tasks are enqueued on commit (a worker never
looks for a row that isn't there yet).
"""

from __future__ import annotations

from django.dispatch import receiver

from environments import signals
from environments.models import Artifact, ChangeReason, ChangeRequest, Resource

from . import queue, watching
from .models import Promotion


@receiver(signals.desired_state_changed, dispatch_uid="promotions.record_change")
def record_change(*, resource: Resource, reason: str, to_digest: str = "", artifact: Artifact | None = None,
                  actor=None, actor_label: str = "", change_request: ChangeRequest | None = None, **_) -> Promotion | None:
    """Queue a Promotion for a known new target digest and ask for a reconcile."""
    queue.enqueue_reconcile(resource.pk)
    watching.ensure(resource)  # a tag it now follows is watched from now on
    if reason in (ChangeReason.PIN_EDIT, ChangeReason.PROMOTE):
        queue.enqueue_keep(resource.pk, resource.current_image)  # keep tags: the pinned digest, where it is there already
    if not to_digest or to_digest == resource.current_digest:
        return None  # nothing will change what runs (unknown yet, config only, or a rebuild of the same bytes)
    # A newer decision replaces requests not yet applied (an old create whose pin was
    # edited since must not stay queued forever).
    Promotion.objects.filter(resource=resource, status=Promotion.Status.QUEUED).exclude(to_digest=to_digest).update(
        status=Promotion.Status.SUPERSEDED)
    if change_request is not None:
        # The promotion that waited for the approvals goes ahead (its requester stays who asked).
        waited = Promotion.objects.filter(change_request=change_request, status=Promotion.Status.AWAITING_APPROVAL)
        if waited.update(status=Promotion.Status.QUEUED, to_digest=to_digest, artifact=artifact):
            return waited.first()
    return Promotion.objects.create(
        resource=resource,
        from_digest=resource.current_digest,
        to_digest=to_digest,
        artifact=artifact,
        reason=reason,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        actor_label=actor_label,
    )


@receiver(signals.reconcile_requested, dispatch_uid="promotions.reconcile_requested")
def reconcile_requested(*, resource_ids: list[int], repair: bool = True, **_) -> None:
    # A person asking for a reconcile wants everything put back, whatever Hoist believes
    # (an object deleted by hand, a cluster that came back empty): a repair. Hoist itself
    # (a freeze that ended) only wants what waited to go now: ordinary reconciles, in chunks.
    if not repair:
        queue.enqueue_reconcile_many(list(resource_ids))
        return
    for resource_id in resource_ids:
        queue.enqueue_reconcile(resource_id, repair=True)


@receiver(signals.resource_removed, dispatch_uid="promotions.cleanup")
def cleanup(*, cluster_id: int, namespace: str, project: str, environment: str, resource: str, **_) -> None:
    queue.enqueue_cleanup(cluster_id, namespace, project, environment, resource)


@receiver(signals.change_requested, dispatch_uid="promotions.change_requested")
def change_requested(*, request: ChangeRequest, reason: str, actor=None, **_) -> Promotion:
    """A change waits for approvals: the history shows it as a promotion awaiting approval."""
    Promotion.objects.filter(resource_id=request.resource_id, status=Promotion.Status.AWAITING_APPROVAL).exclude(
        change_request=request).update(status=Promotion.Status.SUPERSEDED)
    person = getattr(actor, "is_authenticated", False)
    return Promotion.objects.create(
        resource_id=request.resource_id, from_digest=request.from_digest, to_digest=request.to_digest,
        reason=reason, status=Promotion.Status.AWAITING_APPROVAL, change_request=request,
        actor=actor if person else None, actor_label="" if person else "Hoist (track latest)",
    )


@receiver(signals.change_request_decided, dispatch_uid="promotions.change_request_decided")
def change_request_decided(*, request: ChangeRequest, **_) -> None:
    waiting = Promotion.objects.filter(change_request=request, status=Promotion.Status.AWAITING_APPROVAL)
    if request.status == ChangeRequest.Status.APPROVED:
        if request.kind == ChangeRequest.Kind.AUTOMATIC:
            waiting.update(status=Promotion.Status.QUEUED)
            queue.enqueue_reconcile(request.resource_id)  # the engine takes the approved digest now
        return  # a person's approved change waiting for a freeze to end: not applied yet
    waiting.update(status=Promotion.Status.REJECTED if request.status == ChangeRequest.Status.REJECTED
                   else Promotion.Status.SUPERSEDED)
