"""Small helpers the pages share, and the caller's address (the audit trail, login throttling)."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_ipv46_address
from django.http import HttpResponse, HttpResponseRedirect


def client_ip(request) -> str | None:
    """The caller's address, or None when it isn't one.

    Behind the TLS proxy (HOIST_BEHIND_TLS_PROXY, which sets SECURE_PROXY_SSL_HEADER) the
    *last* X-Forwarded-For entry: the address the proxy itself saw and appended. Entries
    before it are whatever the client sent, so trusting the first would let anyone pick a
    fresh address per request (and so escape the login lockout). Otherwise REMOTE_ADDR.
    """
    if request is None:
        return None
    address = ""
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        address = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
    address = address or request.META.get("REMOTE_ADDR", "")
    try:
        validate_ipv46_address(address)
    except ValidationError:
        return None
    return address


def wants_fragment(request, target_id: str) -> bool:
    """An HTMX request that swaps the element `#target_id` alone (a live refresh or a partial action).

    Other HTMX requests (an `HX-Location` to a page, a history restore) get
    the full page.
    """
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request and htmx.target == target_id


def location(request, url: str) -> HttpResponse:
    """Finish an action: `HX-Location` for HTMX (no full reload), a redirect otherwise."""
    if request.htmx:
        response = HttpResponse()
        response["HX-Location"] = json.dumps({"path": url, "target": "body"})
        return response
    return HttpResponseRedirect(url)
