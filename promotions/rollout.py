"""What runs: judging a Deployment's rollout, and recording what the cluster says.

`assess()` reads a Deployment the way `kubectl rollout status` does; the
reconcile (right after it applies) and the observer (on every watch event)
hand its answer to `record()`, which moves the resource and its open
promotions on: rolling out → healthy | failed. A healthy rollout marks the
artifact healthy (what "follow healthy" dependants and their soak go by),
and a failed one remembers the digest so it is not applied again by itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone

from django.db import transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from environments.models import Artifact, Binding, Follow, Phase, Resource

from . import notifications, queue, rows
from .models import Promotion

log = logging.getLogger(__name__)

PROGRESSING, HEALTHY, FAILED, MISSING = "progressing", "healthy", "failed", "missing"


@dataclass(frozen=True)
class Health:
    state: str  # progressing | healthy | failed | missing
    image: str  # the image of the Deployment's pod template ("" when missing)
    ready: int = 0
    total: int = 0
    message: str = ""

    @property
    def summary(self) -> str:
        if self.state == PROGRESSING:
            return f"rolling out {self.ready}/{self.total}"
        if self.state == FAILED:
            return f"failed: {self.message}"
        return self.state


def _container_image(deployment: dict, container: str) -> str:
    containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return next((c.get("image", "") for c in containers if c.get("name") == container), "")


def assess(deployment: dict | None, container: str) -> Health:
    """Healthy = observedGeneration caught up, every replica updated and available, no old
    ones left, Available=True. Failed = Progressing=False with ProgressDeadlineExceeded."""
    if deployment is None:
        return Health(MISSING, "", message="the Deployment is gone")
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    image = _container_image(deployment, container)
    total = int(spec.get("replicas", 1))
    updated, available = int(status.get("updatedReplicas", 0)), int(status.get("availableReplicas", 0))
    replicas = int(status.get("replicas", 0))
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    ready = min(updated, available)
    # Nothing in the status speaks of this spec until the controller has observed it (a
    # previous rollout's ProgressDeadlineExceeded must not fail the next one).
    if int(status.get("observedGeneration", 0)) < int(meta.get("generation", 1)):
        return Health(PROGRESSING, image, 0, total)
    progressing = conditions.get("Progressing") or {}
    if progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Health(FAILED, image, ready, total, progressing.get("message") or "ProgressDeadlineExceeded")
    caught_up = True
    available_ok = total == 0 or (conditions.get("Available") or {}).get("status") == "True"
    if caught_up and updated == total and available == total and replicas == total and available_ok:
        return Health(HEALTHY, image, total, total)
    return Health(PROGRESSING, image, ready, total)


@dataclass
class Recorded:
    """What record() changed, for the caller to act on after commit."""

    became: str = ""  # HEALTHY or FAILED when the resource just got there, else ""
    resource: Resource | None = None


def record(resource_id: int, health: Health, *, claim_token: str = "", locked: Resource | None = None,
           pending: dict | None = None, promotions_settled: bool = False,
           promotion: Promotion | None = None, announce: bool = True) -> Recorded:
    """Write what `health` says about the resource, if it is about what Hoist applied.

    A reconcile in progress holds a claim: the observer's word (no token) waits
    for it, so the reconcile, which applied the spec, records first. `locked`:
    the row as the caller holds it locked in its own transaction, up to date.
    A reconcile passes what it writes to that row itself (`pending`, already set
    on `locked`): one UPDATE carries both. `promotions_settled`: the caller has
    already marked every open promotion to this digest healthy (see
    mark_healthy); `promotion`: the one the news is about, when the caller
    created it (else the newest for the digest is looked up). `announce=False`: the caller
    knows the project has no active webhook, the only listener of these events
    (promotions.notifications; a test keeps it so), so there is nobody to tell.
    """
    now = timezone.now()
    # Inside the caller's transaction (`locked`), no savepoint: two round trips fewer per reconcile.
    with transaction.atomic(savepoint=locked is None):
        resource = locked or next(iter(Resource.objects.select_for_update(no_key=True).filter(pk=resource_id).order_by()), None)
        if resource is None:
            return Recorded()
        fields: dict = {}
        became = ""
        digest = resource.current_digest
        if not resource.current_image:
            judged = None
        elif resource.claimed_until and resource.claimed_until > now and resource.claim_token != claim_token:
            judged = False  # the reconcile holding it records; the observer looks again
        elif health.state == MISSING or health.image != resource.current_image:
            judged = False  # not what Hoist applied (drift is the observer's business)
        else:
            judged = True
            fields = {"rollout_ready": health.ready, "rollout_total": health.total}
        if judged and health.state == HEALTHY:
            if resource.phase != Phase.READY or resource.healthy_digest != digest:
                became = HEALTHY
                fields.update(phase=Phase.READY, message="", healthy_digest=digest, healthy_at=now)
                if resource.failed_digest == digest:
                    fields["failed_digest"] = ""
                if locked is None:  # a reconcile (`locked`) marked its artifact when it read the rollout
                    Artifact.objects.filter(resource=resource, digest=digest, healthy_at__isnull=True).update(healthy_at=now)
            # Also a repair's drift promotion on a resource that stayed healthy.
            if not promotions_settled:
                _promotions_healthy(resource, digest, now)
        elif judged and health.state == FAILED:
            rollback_failed = bool(resource.failed_digest) and digest == resource.healthy_digest
            if resource.phase != Phase.FAILED or (resource.failed_digest != digest and not rollback_failed):
                became = FAILED
                message = f"Rollout of {digest[:19]}… failed: {health.message}"
                if rollback_failed:
                    # The rollback target failed too: keep remembering the first failure (else the
                    # two would take turns forever) and leave it to a person.
                    message = f"Rollback to {digest[:19]}… failed too: {health.message}"
                else:
                    fields["failed_digest"] = digest
                fields.update(phase=Phase.FAILED, message=message[:2000])
                Promotion.objects.filter(resource=resource, status__in=Promotion.OPEN, to_digest=digest).update(
                    status=Promotion.Status.FAILED, error=health.message[:2000])
                if (resource.rollback_on_failure and not rollback_failed and resource.healthy_digest
                        and resource.healthy_digest != digest):
                    fields["dirty_at"] = now  # the reconcile rolls back to the last healthy digest
        elif judged:
            if resource.phase not in (Phase.FAILED,) or resource.failed_digest != digest:
                fields.update(phase=Phase.PROGRESSING, message=health.summary)
        for name, value in fields.items():
            setattr(resource, name, value)
        if pending or fields:
            rows.update(Resource, resource.pk, {**(pending or {}), **fields})
        if not judged:
            return Recorded(resource=resource) if judged is False else Recorded()
        if became == FAILED and "dirty_at" in fields:
            queue.enqueue_reconcile(resource.pk)
        if became and announce:  # the project's webhooks hear of it after commit (never blocks this record)
            notifications.promotion_event(resource, f"promotion.{became}", digest, promotion=promotion,
                                          error=health.message if became == FAILED else "")
    if became:
        log.info("%s is %s on %s", resource, became, digest[:19],
                 extra={"resource": str(resource), "digest": digest, "rollout": became, "detail": health.message})
    return Recorded(became=became, resource=resource)


HEALTHY_FIELDS = ["status", "healthy_at", "healthy_latency_s", "applied_at"]


def mark_healthy(promotion: Promotion, now: datetime) -> list[str]:
    """Set `promotion` healthy as of `now` (in memory); returns the fields to save."""
    promotion.status, promotion.healthy_at = Promotion.Status.HEALTHY, now
    first = promotion.artifact.first_published_at if promotion.artifact_id else None
    if first is not None:
        promotion.healthy_latency_s = (now - first).total_seconds()
    if promotion.applied_at is None:
        promotion.applied_at = now
    return HEALTHY_FIELDS


def _promotions_healthy(resource: Resource, digest: str, now: datetime) -> None:
    for promotion in Promotion.objects.filter(resource=resource, status__in=Promotion.OPEN, to_digest=digest).select_related("artifact"):
        promotion.save(update_fields=mark_healthy(promotion, now))


# --- what dependants see ----------------------------------------------------------------------

HISTORY = 10


def _rfc3339(value: datetime | None) -> str:
    return value.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else ""


def _artifact_status(artifact, image: str) -> dict:
    entry = {
        "image": image, "digest": artifact.digest, "sequence": artifact.sequence,
        "publishedAt": _rfc3339(artifact.published_at), "firstPublishedAt": _rfc3339(artifact.first_published_at),
    }
    if artifact.healthy_at:
        entry["healthyAt"] = _rfc3339(artifact.healthy_at)
    return entry


def image_source_status(resource: Resource, image: str, digest: str) -> dict:
    """The ImageSource status same-cluster dependants read, from Hoist's own records.

    `image`/`digest`: what the resource runs now (its repository is what
    dependants on the same cluster pull from too).
    """
    repository = image.rpartition("@")[0]
    status: dict = {}
    # One query for both: the newest artifacts that are healthy or carry this digest (room for
    # a few publishes of this digest that never became healthy, ahead of the healthy ones).
    window = 2 * HISTORY
    # Plain rows in one hand-written statement (promotions.rows): a reconcile writes this status
    # every time.
    recent = rows.status_artifacts(resource.pk, digest, window)
    published = next((a for a in recent if a.digest == digest), None)
    if published is None and len(recent) == window:  # older than every one read: look it up
        published = rows.newest_artifact(resource.pk, digest)
    if published is not None:
        status["publishedArtifact"] = _artifact_status(published, f"{repository}@{published.digest}")
    healthy = [a for a in recent if a.healthy_at is not None][:HISTORY]
    if healthy:
        status["latestArtifact"] = _artifact_status(healthy[0], f"{repository}@{healthy[0].digest}")
        status["healthyArtifacts"] = [_artifact_status(a, f"{repository}@{a.digest}") for a in healthy]
    return status


def fan_out(resource: Resource, *, healthy: bool, published: bool = False) -> None:
    """Queue the track-latest dependants that follow what just happened.

    `published` (an apply): those that follow "published"; `healthy` (a healthy
    rollout): those that follow "healthy" (a soak time makes the observer come
    back when it has passed). One query finds them all, whichever happened.
    """
    dependants = list(Resource.objects.filter(promote_from=resource, binding=Binding.TRACK_LATEST)
                      .order_by("pk").values_list("pk", "follow", "soak_seconds"))
    if not dependants:
        return
    now_ids = [pk for pk, follow, soak in dependants
               if (published and follow == Follow.PUBLISHED) or (healthy and follow == Follow.HEALTHY and not soak)]
    if healthy:
        now = timezone.now()
        for soak in sorted({soak for _, follow, soak in dependants if follow == Follow.HEALTHY and soak}):
            # An earlier check already scheduled (an older build still soaking) stays first.
            at = now + timedelta(seconds=soak)
            when = Value(at, output_field=DateTimeField())
            ids = [pk for pk, follow, s in dependants if follow == Follow.HEALTHY and s == soak]
            Resource.objects.filter(pk__in=ids).update(next_check_at=Least(Coalesce(F("next_check_at"), when), when))
    queue.enqueue_reconcile_many(now_ids)
