"""Publishing by tag: the one publish that needs the registry, so it belongs to the engine.

The tag is resolved to a digest once, through the registry client, outside
any transaction (a slow registry must not hold database locks), and the
digest is then published through `environments.services.artifact_publish`
like any other. Every final outcome leaves one audit entry.

A person or a CI job waiting on an HTTP request is not held by a slow
registry: the request waits HOIST_REQUEST_REGISTRY_WAIT_S at most, then the
resolve is queued as a task (`publish_tag`), which keeps trying with a
growing pause, and the caller is told so (`Queued`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task, schedule

from environments import services
from environments.models import Artifact, Resource
from projects import audit

from . import mirror
from .registry import RegistryError

log = logging.getLogger(__name__)

# The queued resolve gives up after this many tries (about 10 minutes with the pauses below).
QUEUED_ATTEMPTS = 8


@dataclass(frozen=True)
class Queued:
    """The registry didn't answer in time: the publish will happen in the background."""

    repository: str
    tag: str
    reason: str
    retry_at: datetime


def artifact_publish_tag(
    *, resource: Resource, tag: str, repository: str = "", origin: str = Artifact.Origin.API,
    actor=None, actor_label: str = "", wait_s: float | None = None, attempt: int = 0,
) -> Artifact | Queued:
    """Publish what `tag` points at now.

    A tag the registry doesn't have is a ValidationError on `tag`. `wait_s`: a
    caller that can't wait long (an HTTP request) gets a `Queued` when the
    registry is slow, down or busy, instead of an error; the task keeps trying.
    Without it, a registry that can't be reached raises RegistryError(retryable=True).
    """
    said = {"tag": tag, "repository": repository, "origin": origin}
    if not tag:
        error = ValidationError({"digest": ["Give the digest that was pushed, or the tag to resolve to one."]})
        audit.refused("artifact.publish", error, actor=actor, target=resource, changes=said, actor_label=actor_label)
        raise error
    # Role, rules and the outbound policy first (audited if refused): nobody makes Hoist
    # call a registry for a publish they may not make, or at a host it may not reach.
    repository = services.artifact_publish(
        resource=resource, digest=None, tag=tag, repository=repository, origin=origin, actor=actor,
        actor_label=actor_label, validate_only=True,
    ).repository
    try:
        digest = mirror.resolve(f"{repository}:{tag}", deadline=wait_s)
    except RegistryError as exc:
        log.warning("resolving %s:%s for %s failed: %s", repository, tag, resource, exc.message)
        if exc.retryable and (wait_s is not None or attempt):
            queued = _queue(resource, tag, repository, origin, actor, actor_label, attempt + 1, exc)
            if queued is not None:
                return queued
        if exc.retryable:
            audit.refused("artifact.publish", exc, actor=actor, target=resource, changes=said, actor_label=actor_label)
            raise
        # Staff read the registry's own words; anyone else can't learn from them what answered.
        detail = exc.message if getattr(actor, "is_staff", False) else exc.public
        error = ValidationError({"tag": [f"Can't resolve {repository}:{tag}: {detail}"]})
        audit.refused("artifact.publish", error, actor=actor, target=resource, changes=said, actor_label=actor_label)
        raise error from None
    return services.artifact_publish(resource=resource, digest=digest, repository=repository, tag=tag,
                                     origin=origin, actor=actor, actor_label=actor_label)


def _queue(resource: Resource, tag: str, repository: str, origin: str, actor, actor_label: str,
           attempt: int, exc: RegistryError) -> Queued | None:
    """Try again in the background, later each time; None when it's time to give up."""
    if attempt > QUEUED_ATTEMPTS:
        return None
    pause = min(120.0, 2.0 * 2 ** (attempt - 1))
    retry_at = max(getattr(exc, "retry_at", None) or timezone.now(), timezone.now() + timedelta(seconds=pause))
    # Plain values only: a schedule stores its arguments as a literal (an enum member would not read back).
    arguments = (resource.pk, tag, repository, str(origin), getattr(actor, "pk", None), actor_label, attempt)
    if attempt == 1:
        transaction.on_commit(lambda: async_task("promotions.publishing.publish_tag", *arguments,
                                                 group="publish", task_name=f"publish-{resource.pk}-{tag}"[:100]))
    else:
        transaction.on_commit(lambda: schedule("promotions.publishing.publish_tag", *arguments,
                                               schedule_type=Schedule.ONCE, next_run=retry_at,  # deleted once it has run
                                               name=f"publish-{resource.pk}-{tag}-{attempt}-{timezone.now():%H%M%S%f}"[:100]))
    reason = "the registry is busy or not answering" if isinstance(exc, mirror.Deferred) else "the registry didn't answer in time"
    return Queued(repository=repository, tag=tag, reason=reason, retry_at=retry_at)


def publish_tag(resource_id: int, tag: str, repository: str, origin: str, actor_id: int | None,
                actor_label: str, attempt: int) -> None:
    """The queued half of a publish by tag (a django-q2 task)."""
    resource = Resource.objects.select_related("environment__project").filter(pk=resource_id).first()
    if resource is None:
        return  # deleted meanwhile: nothing to publish to
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    try:
        outcome = artifact_publish_tag(resource=resource, tag=tag, repository=repository, origin=origin, actor=actor,
                                       actor_label=actor_label, attempt=attempt)
    except (ValidationError, RegistryError) as exc:  # audited; nobody is waiting for an answer
        log.warning("queued publish of %s:%s to %s gave up: %s", repository, tag, resource, exc)
        return
    if isinstance(outcome, Queued):
        log.info("queued publish of %s:%s to %s: trying again at %s", repository, tag, resource, outcome.retry_at)
