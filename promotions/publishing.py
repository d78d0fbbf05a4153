"""Publishing by tag: the one publish that needs the registry, so it belongs to the engine.

The tag is resolved to a digest once, through the registry client, outside
any transaction (a slow registry must not hold database locks), and the
digest is then published through `environments.services.artifact_publish`
like any other. Every outcome leaves one audit entry.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

from environments import services
from environments.models import Artifact, Resource
from projects import audit

from . import mirror
from .registry import RegistryError


def artifact_publish_tag(
    *, resource: Resource, tag: str, repository: str = "", origin: str = Artifact.Origin.API,
    actor=None, actor_label: str = "",
) -> Artifact:
    """Publish what `tag` points at now.

    A tag the registry doesn't have is a ValidationError on `tag`; a registry
    that can't be reached raises RegistryError(retryable=True) for the caller
    to report as temporary.
    """
    said = {"tag": tag, "repository": repository, "origin": origin}
    if not tag:
        error = ValidationError({"digest": ["Give the digest that was pushed, or the tag to resolve to one."]})
        audit.refused("artifact.publish", error, actor=actor, target=resource, changes=said, actor_label=actor_label)
        raise error
    # Role and rules first (audited if refused): nobody makes Hoist call a registry
    # for a publish they may not make.
    repository = services.artifact_publish(
        resource=resource, digest=None, tag=tag, repository=repository, origin=origin, actor=actor,
        actor_label=actor_label, validate_only=True,
    ).repository
    try:
        digest = mirror.resolve(f"{repository}:{tag}")
    except RegistryError as exc:
        error = exc if exc.retryable else ValidationError({"tag": [f"Can't resolve {repository}:{tag}: {exc}"]})
        audit.refused("artifact.publish", error, actor=actor, target=resource, changes=said, actor_label=actor_label)
        if error is exc:
            raise
        raise error from exc
    return services.artifact_publish(resource=resource, digest=digest, repository=repository, tag=tag,
                                     origin=origin, actor=actor, actor_label=actor_label)
