"""Small helpers the pages share."""

from __future__ import annotations

import json

from django.http import HttpResponse, HttpResponseRedirect


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
