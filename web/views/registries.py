"""The registries page (staff): every registry Hoist calls, how it is paced, what Hoist saw of it."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.views.decorators.http import require_GET

from environments import selectors


@login_required
@require_GET
def registry_list(request):
    if not request.user.is_staff:
        raise PermissionDenied("Only staff see registry settings.")
    rows = []
    for registry in selectors.registries_with_watch_counts().order_by("host"):
        effective = registry.effective()
        needed = registry.watched_tags / effective["watch_interval_s"]
        rows.append({
            "registry": registry, "effective": effective, "requests_per_min": registry.requests_last_minute(),
            # Watching that many tags that often needs this share of the host's rate limit.
            "watch_share": needed / effective["rate_per_s"],
        })
    return render(request, "registries/registry_list.html", {"rows": rows})
