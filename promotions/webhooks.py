"""Registry notification receiver: a push to a repository publishes to the resources built from it.

Configure each registry (CNCF distribution `notifications.endpoints`) to POST
to `/hooks/registry/?registry=<host:port>` with the header
`Authorization: Bearer <HOIST_WEBHOOK_TOKEN>`. Only manifest pushes by tag
count: an image-source resource whose image is `<host>/<path>:<tag>` publishes
the pushed digest when that tag is pushed (a reference without tag means
`latest`). Resources given by digest don't follow pushes.
"""

from __future__ import annotations

import hmac
import json
import logging

from datetime import timedelta, timezone as dt_timezone

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from environments import selectors, services
from environments.models import Artifact, Resource, SourceType

from . import metrics
from .models import TagHead, WebhookEvent
from .registry import MANIFEST_MEDIA_TYPES, is_digest, parse_reference

log = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024


def _error(status: int, field: str, message: str) -> JsonResponse:
    return JsonResponse({"errors": {field: [message]}, "detail": message}, status=status)


def _authorised(request) -> bool:
    expected = settings.HOIST_WEBHOOK_TOKEN
    if not expected:
        return False  # no token configured: the receiver is closed
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


def _candidates(host: str, repository: str) -> list[tuple[Resource, str]]:
    """Image-source resources built from host/repository, with the tag each follows."""
    found = []
    for resource in Resource.objects.filter(source_type=SourceType.IMAGE, image__contains=repository).select_related(
        "environment__project"
    ):
        try:
            ref = parse_reference(resource.image)
        except ValueError:
            continue
        if ref.repository != repository or ref.digest:
            continue
        if ref.registry != host:
            continue
        found.append((resource, ref.tag or "latest"))
    return found


REPLAY_WINDOW = timedelta(days=7)


def _first_delivery(host: str, event: dict) -> bool:
    """False when this registry already sent an event with this id (a redelivery or a replay)."""
    event_id = str(event.get("id") or "")[:255]
    if not event_id:
        return True  # nothing to tell deliveries apart by; the tag's clock below still applies
    return not WebhookEvent.objects.filter(registry=host[:255], event_id=event_id).exists()


def _handled(host: str, event: dict) -> None:
    """Remember the event once it was handled (a delivery that failed half-way may come again)."""
    event_id = str(event.get("id") or "")[:255]
    if not event_id:
        return
    WebhookEvent.objects.filter(received_at__lt=timezone.now() - REPLAY_WINDOW).delete()
    try:
        with transaction.atomic():
            WebhookEvent.objects.create(registry=host[:255], event_id=event_id)
    except IntegrityError:
        pass  # a concurrent delivery of the same event got there first


def _newest_push(host: str, repository: str, tag: str, digest: str, event: dict) -> bool:
    """False when the event is older (by the registry's own timestamp) than a push of the same
    tag already seen: a late or replayed push must not move the tag, and its followers, back."""
    pushed_at = parse_datetime(str(event.get("timestamp") or ""))
    if pushed_at is None:
        return True
    if timezone.is_naive(pushed_at):
        pushed_at = timezone.make_aware(pushed_at, dt_timezone.utc)
    key = {"registry": host[:255], "repository": repository[:255], "tag": tag[:128]}
    with transaction.atomic():
        head = TagHead.objects.select_for_update().filter(**key).first()
        if head is not None and pushed_at <= head.pushed_at and head.digest != digest:
            return False
        if head is None:
            TagHead.objects.create(**key, digest=digest, pushed_at=pushed_at)
        elif pushed_at > head.pushed_at:
            TagHead.objects.filter(pk=head.pk).update(digest=digest, pushed_at=pushed_at)
    return True


@csrf_exempt
@require_POST
def registry_notifications(request):
    if not _authorised(request):
        metrics.webhook_delivery("unauthorized")
        return _error(401, "authorization", "Missing or wrong bearer token for the registry webhook.")
    if len(request.body) > MAX_BODY:
        metrics.webhook_delivery("too_large")
        return _error(413, "body", f"Notification bodies are limited to {MAX_BODY} bytes.")
    try:
        envelope = json.loads(request.body)
        events = envelope["events"]
        if not isinstance(events, list):
            raise TypeError("events is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        metrics.webhook_delivery("bad_request")
        return _error(400, "events", f"Expected a JSON notification envelope with an 'events' list ({exc}).")

    host_hint = request.GET.get("registry", "")
    published, ignored = [], 0
    for event in events:
        if not isinstance(event, dict) or event.get("action") != "push":
            ignored += 1
            continue
        target = event.get("target") or {}
        digest, repository, tag = target.get("digest", ""), target.get("repository", ""), target.get("tag", "")
        if target.get("mediaType") not in MANIFEST_MEDIA_TYPES or not is_digest(digest) or not repository or not tag:
            ignored += 1  # blob pushes, pushes by digest (index children), malformed targets
            continue
        host = host_hint or ((event.get("request") or {}).get("host") or "")
        if not host:
            ignored += 1  # without the registry's name, same-named repositories elsewhere would match
            continue
        if not _first_delivery(host, event) or not _newest_push(host, repository, tag, digest, event):
            ignored += 1  # a redelivery or replay, or a push older than one already seen: never backwards
            continue
        matched = False
        for resource, follows in _candidates(host, repository):
            if follows != tag:
                continue
            matched = True
            latest = selectors.latest_artifact(resource)
            if latest is not None and latest.digest == digest and latest.tag == tag:
                continue  # a redelivered event: already published
            artifact = services.artifact_publish(
                resource=resource, digest=digest, tag=tag, origin=Artifact.Origin.WEBHOOK,
                actor_label=f"registry webhook ({host or 'registry'})",
            )
            published.append({"resource": str(resource), "digest": digest, "sequence": artifact.sequence})
        _handled(host, event)
        if not matched:
            ignored += 1
    metrics.webhook_delivery("accepted", events=len(published), ignored=ignored)
    return JsonResponse({"published": published, "ignored": ignored}, status=202)
