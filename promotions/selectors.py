"""Read queries of the promotion history (what the engine did, for the pages and the API)."""

from __future__ import annotations

from .models import Promotion


def project_promotions(project):
    return (
        Promotion.objects.filter(resource__environment__project=project)
        .select_related("resource__environment", "actor")
        .order_by("-queued_at", "-id")
    )


def resource_promotions(resource):
    return resource.promotions.select_related("actor").order_by("-queued_at", "-id")
