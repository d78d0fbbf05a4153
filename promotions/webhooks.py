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

from environments.models import Artifact

from . import metrics, tags
from .models import WebhookEvent
from .registry import MANIFEST_MEDIA_TYPES, is_digest

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


def _pushed_at(event: dict):
    """The registry's own timestamp of the push, if it gave a readable one."""
    pushed_at = parse_datetime(str(event.get("timestamp") or ""))
    if pushed_at is not None and timezone.is_naive(pushed_at):
        pushed_at = timezone.make_aware(pushed_at, dt_timezone.utc)
    return pushed_at


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
        if not _first_delivery(host, event):
            ignored += 1  # a redelivery or replay of an event already handled
            continue
        outcome = tags.tag_moved(host, repository, tag, digest, pushed_at=_pushed_at(event), origin=Artifact.Origin.WEBHOOK,
                                 actor_label=f"registry webhook ({host or 'registry'})")
        if outcome.stale:
            ignored += 1  # a push older than one already seen: never backwards
            continue
        published.extend(outcome.published)
        _handled(host, event)
        if not outcome.followed:
            ignored += 1
    metrics.webhook_delivery("accepted", events=len(published), ignored=ignored)
    return JsonResponse({"published": published, "ignored": ignored}, status=202)
