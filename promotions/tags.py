"""A registry tag now points at a new digest: publish it to every image-source resource that follows the tag.

Two things learn that a tag moved: a registry's push notification
(`promotions.webhooks`) and the tag watch (`promotions.watching`), for
registries that send none. Both come here, so both publish through the same
service, leave the same audit entries, and are de-duplicated the same way:

- a push older (by its own clock) than the newest one seen for the tag can't
  move the tag, or its followers, back (`TagHead`);
- a resource whose latest publish is already this digest from this tag gets
  nothing new (a redelivery, or the watch seeing what a webhook already said).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from environments import selectors, services
from environments.models import Resource, SourceType

from .models import TagHead
from .registry import parse_reference


@dataclass
class Outcome:
    followed: bool = False  # some resource follows this tag
    stale: bool = False  # older than a push already seen: nothing published
    published: list[dict] = field(default_factory=list)


def followers(host: str, repository: str, tag: str) -> list[Resource]:
    """Image-source resources whose image is host/repository:tag (no tag means `latest`)."""
    found = []
    for resource in Resource.objects.filter(source_type=SourceType.IMAGE, image__contains=repository).select_related(
        "environment__project"
    ):
        try:
            ref = parse_reference(resource.image)
        except ValueError:
            continue
        if ref.registry != host or ref.repository != repository or ref.digest:
            continue  # same-named repositories elsewhere, or a resource given by digest
        if (ref.tag or "latest") == tag:
            found.append(resource)
    return found


def newest_push(host: str, repository: str, tag: str, digest: str, *, pushed_at: datetime | None = None,
                looked_at: datetime | None = None) -> bool:
    """Record that the tag points at `digest`, unless that would move it back; False then.

    `pushed_at` (a push notification): when the registry says the push happened; a push of
    another digest at or after it was seen already → older news. `looked_at` (a tag watch):
    when, by Hoist's clock, the HEAD that saw `digest` started; the tag moved to another
    digest since → older news. With neither, the tag's history is not consulted.
    """
    if pushed_at is None and looked_at is None:
        return True
    key = {"registry": host[:255], "repository": repository[:255], "tag": tag[:128]}
    now = timezone.now()
    with transaction.atomic():
        head = TagHead.objects.select_for_update().filter(**key).first()
        if head is not None and head.digest != digest:
            if pushed_at is not None and pushed_at <= head.pushed_at:
                return False
            if looked_at is not None and head.seen_at is not None and head.seen_at >= looked_at:
                return False
        if head is None:
            TagHead.objects.create(**key, digest=digest, pushed_at=pushed_at or looked_at, seen_at=now)
        elif head.digest != digest or (pushed_at is not None and pushed_at > head.pushed_at):
            # The registry's clock only from the registry: a watch keeps the last push time it was told.
            newest = max(head.pushed_at, pushed_at) if pushed_at is not None else head.pushed_at
            TagHead.objects.filter(pk=head.pk).update(digest=digest, pushed_at=newest, seen_at=now)
    return True


def tag_moved(host: str, repository: str, tag: str, digest: str, *, origin: str, actor_label: str,
              pushed_at: datetime | None = None, looked_at: datetime | None = None,
              only_from_tag: bool = False) -> Outcome:
    """Publish `digest` to the tag's followers (see `newest_push` for `pushed_at`/`looked_at`).

    `only_from_tag`: publish only to followers whose latest publish came from this tag (a new
    watch's first look must not override a digest someone published by hand since).
    """
    outcome = Outcome()
    if not newest_push(host, repository, tag, digest, pushed_at=pushed_at, looked_at=looked_at):
        outcome.stale = True
        return outcome
    for resource in followers(host, repository, tag):
        outcome.followed = True
        latest = selectors.latest_artifact(resource)
        if latest is not None and latest.digest == digest and latest.tag == tag:
            continue  # already published (a redelivery, or both the webhook and the watch saw it)
        if only_from_tag and latest is not None and latest.tag != tag:
            continue
        artifact = services.artifact_publish(resource=resource, digest=digest, tag=tag, origin=origin,
                                             actor_label=actor_label)
        outcome.published.append({"resource": str(resource), "digest": digest, "sequence": artifact.sequence})
    return outcome
