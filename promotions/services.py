"""Publishing, pinning and promoting. Every entry point calls these.

A service that changes what a resource should run records a queued
Promotion (who, why, from → to) and asks for a reconcile after commit; the
reconcile applies it and marks it applied or failed. Nothing here talks to
a cluster or a registry.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from environments import rules
from environments.models import Artifact, Binding, Resource, SourceType
from projects.permissions import require_change_environment

from . import tasks
from .models import Promotion


def latest_artifact(resource: Resource) -> Artifact | None:
    """The resource's newest publish for its current image reference (see Resource.artifact_floor)."""
    return resource.artifacts.filter(sequence__gt=resource.artifact_floor).order_by("-sequence").first()


def desired_source(resource: Resource) -> tuple[str, Artifact | None]:
    """The digest the resource should run now, and the artifact it comes from.

    Pins name their digest; track-latest follows the upstream's latest
    artifact; an image source runs its own latest artifact. ("", None) means
    nothing is known yet (an upstream that never published, a tag not resolved).
    """
    if resource.source_type == SourceType.PROMOTE:
        if resource.binding == Binding.PIN_DIGEST:
            return resource.pinned_digest, None
        upstream_latest = latest_artifact(resource.promote_from) if resource.promote_from_id else None
        return (upstream_latest.digest, upstream_latest) if upstream_latest else ("", None)
    own = latest_artifact(resource)
    return (own.digest, own) if own else ("", None)


def _record(
    resource: Resource, *, reason: str, to_digest: str, artifact: Artifact | None = None,
    actor=None, actor_label: str = "",
) -> Promotion | None:
    """Queue a Promotion for a known target digest and ask for a reconcile."""
    tasks.enqueue_reconcile(resource.pk)
    if not to_digest or to_digest == resource.current_digest:
        return None  # nothing will change what runs (unknown yet, or a rebuild of the same bytes)
    return Promotion.objects.create(
        resource=resource,
        from_digest=resource.current_digest,
        to_digest=to_digest,
        artifact=artifact,
        reason=reason,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        actor_label=actor_label,
    )


def validate_publish(*, resource: Resource, digest: str | None, tag: str = "", repository: str = "") -> str:
    """Check a publish; returns the repository the artifact will record.

    `digest=None`: the digest is not known yet (a tag still to be resolved).
    """
    if resource.source_type != SourceType.IMAGE:
        raise ValidationError(
            {"resource": [f"{resource} promotes from {resource.promote_from}; publish to the upstream instead."]}
        )
    if digest is not None:
        rules.check_digest(digest, "digest")
    if tag and (len(tag) > 128 or not rules.TAG_RE.match(tag)):
        raise ValidationError({"tag": [f"Not a valid tag: {tag[:80]!r}."]})
    if repository:
        parsed = rules.check_image_reference(repository, "repository")
        if parsed.tag or parsed.digest:
            raise ValidationError({"repository": ["Give the repository without a tag or digest."]})
        return parsed.name
    return rules.check_image_reference(resource.image).name


def artifact_publish(
    *, resource: Resource, digest: str, repository: str = "", tag: str = "",
    origin: str = Artifact.Origin.API, actor=None, actor_label: str = "",
) -> Artifact:
    """Record that an image-source resource published `digest`; track-latest dependants follow."""
    require_change_environment(actor, resource.environment, "publish images")
    repository = validate_publish(resource=resource, digest=digest, tag=tag, repository=repository)
    with transaction.atomic():
        locked = Resource.objects.select_for_update().get(pk=resource.pk)
        locked.artifact_seq += 1
        locked.save(update_fields=["artifact_seq"])
        now = timezone.now()
        artifact = Artifact.objects.create(
            resource=locked, sequence=locked.artifact_seq, repository=repository, digest=digest, tag=tag,
            origin=origin, first_published_at=now,
            published_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        _record(locked, reason=Promotion.Reason.PUBLISH, to_digest=digest, artifact=artifact, actor=actor, actor_label=actor_label)
    return artifact


def artifact_publish_tag(
    *, resource: Resource, tag: str, repository: str = "", origin: str = Artifact.Origin.API,
    actor=None, actor_label: str = "",
) -> Artifact:
    """Publish what `tag` points at now: resolved to a digest once, through the registry.

    A tag the registry doesn't have is a ValidationError on `tag`; a registry
    that can't be reached raises RegistryError(retryable=True) for the caller
    to report as temporary.
    """
    from . import mirror
    from .registry import RegistryError

    require_change_environment(actor, resource.environment, "publish images")
    if not tag:
        raise ValidationError({"digest": ["Give the digest that was pushed, or the tag to resolve to one."]})
    repository = validate_publish(resource=resource, digest=None, tag=tag, repository=repository)
    try:
        digest = mirror.resolve(f"{repository}:{tag}")
    except RegistryError as exc:
        if exc.retryable:
            raise
        raise ValidationError({"tag": [f"Can't resolve {repository}:{tag}: {exc}"]}) from exc
    return artifact_publish(resource=resource, digest=digest, repository=repository, tag=tag, origin=origin,
                            actor=actor, actor_label=actor_label)


def on_resource_created(*, resource: Resource, actor=None) -> None:
    digest, artifact = "", None
    if resource.source_type == SourceType.IMAGE:
        parsed = rules.check_image_reference(resource.image)
        if parsed.digest:
            # An image given by digest is its own first publish.
            resource.artifact_seq = 1
            resource.save(update_fields=["artifact_seq"])
            artifact = Artifact.objects.create(
                resource=resource, sequence=1, repository=parsed.name, digest=parsed.digest,
                tag=parsed.tag or "", origin=Artifact.Origin.IMAGE,
                first_published_at=timezone.now(),
                published_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            digest = parsed.digest
    else:
        digest, artifact = desired_source(resource)
    _record(resource, reason=Promotion.Reason.CREATE, to_digest=digest, artifact=artifact, actor=actor)


def on_resource_changed(*, resource: Resource, previous_source: dict, source_changed: bool, actor=None) -> None:
    if not source_changed:
        tasks.enqueue_reconcile(resource.pk)  # config only: same image, new spec
        return
    if resource.source_type == SourceType.IMAGE and resource.image != previous_source["image"]:
        parsed = rules.check_image_reference(resource.image)
        if parsed.digest:
            artifact_publish(resource=resource, digest=parsed.digest, repository=parsed.name,
                             tag=parsed.tag or "", origin=Artifact.Origin.IMAGE, actor=None,
                             actor_label=str(actor) if actor else "")
            return
        # A new tag: what was published for the old reference no longer counts;
        # reconcile resolves the tag (once) and publishes that.
        resource.artifact_floor = resource.artifact_seq
        Resource.objects.filter(pk=resource.pk).update(artifact_floor=resource.artifact_seq)
        tasks.enqueue_reconcile(resource.pk)
        return
    reason = (
        Promotion.Reason.PIN_EDIT
        if resource.binding == Binding.PIN_DIGEST
        else Promotion.Reason.TRACK_LATEST
    )
    digest, artifact = desired_source(resource)
    _record(resource, reason=reason, to_digest=digest, artifact=artifact, actor=actor)


def on_resource_deleted(*, resource: Resource, actor=None) -> None:
    env = resource.environment
    tasks.enqueue_cleanup(env.cluster_id, env.namespace, env.project.slug, env.slug, resource.name)


def resource_pin(*, resource: Resource, digest: str, actor=None) -> Resource:
    """Pin a promoted resource to `digest` (how a newer build reaches prod)."""
    from environments.services import resource_update

    if resource.source_type != SourceType.PROMOTE:
        raise ValidationError({"binding": [f"{resource} has an image source; only promoted resources can be pinned."]})
    return resource_update(resource=resource, binding=Binding.PIN_DIGEST, pinned_digest=digest, actor=actor)


def resource_track_latest(*, resource: Resource, actor=None) -> Resource:
    from environments.services import resource_update

    if resource.source_type != SourceType.PROMOTE:
        raise ValidationError({"binding": [f"{resource} has an image source; only promoted resources track an upstream."]})
    return resource_update(resource=resource, binding=Binding.TRACK_LATEST, actor=actor)


def resource_promote_upstream_current(*, resource: Resource, actor=None) -> Resource:
    """Pin to what the upstream runs now (the pipeline's one-click promote); before its
    first apply, to its latest publish."""
    if resource.source_type != SourceType.PROMOTE:
        raise ValidationError({"binding": [f"{resource} has an image source; there is no upstream to promote from."]})
    upstream = resource.promote_from
    upstream_latest = latest_artifact(upstream)
    digest = upstream.current_digest or (upstream_latest.digest if upstream_latest else "")
    if not digest:
        raise ValidationError({"promote_from": [f"{upstream} has not published an image yet."]})
    return resource_pin(resource=resource, digest=digest, actor=actor)


def reconcile_request(*, resource: Resource, actor=None) -> None:
    """Ask for a reconcile now (operators' "Reconcile now")."""
    require_change_environment(actor, resource.environment, "reconcile resources")
    tasks.enqueue_reconcile(resource.pk)
