"""Read queries of the promotion history (what the engine did, for the pages and the API)."""

from __future__ import annotations

from .models import Promotion, PromotionQuerySet


def project_promotions(project) -> PromotionQuerySet:
    """Every promotion in the project, newest first, each with its cause (`Promotion.cause`)."""
    return (
        Promotion.objects.filter(resource__environment__project=project)
        .with_cause()
        .select_related("resource__environment", "actor")
        .order_by("-queued_at", "-id")
    )


def resource_promotions(resource) -> PromotionQuerySet:
    return resource.promotions.with_cause().select_related("actor").order_by("-queued_at", "-id")
