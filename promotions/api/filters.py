"""The REST API for promotion history: the page's own filters (promotions.history)."""

from django_filters.rest_framework import DjangoFilterBackend

from promotions.history import PromotionFilter

__all__ = ["PromotionFilter", "ProjectFilterBackend"]


class ProjectFilterBackend(DjangoFilterBackend):
    """django-filter for a project's list: the FilterSet checks names against the view's project."""

    def get_filterset_kwargs(self, request, queryset, view):
        return {**super().get_filterset_kwargs(request, queryset, view), "project": view.project}
