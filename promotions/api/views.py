"""Promotion history: per resource, and project-wide with filters."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework.response import Response

from environments.api.views import EnvironmentScopedViewSet
from projects.api.base import ENVIRONMENT_PARAM, PROJECT_PARAM, RESOURCE_PARAM, ProjectScopedViewSet
from promotions.models import Promotion

from .filters import PromotionFilter
from .serializers import PromotionSerializer

RELATED = ("resource__environment", "actor", "artifact")


@extend_schema(tags=["promotions"], parameters=[PROJECT_PARAM])
@extend_schema_view(retrieve=extend_schema(parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)]))
class ProjectPromotionViewSet(ProjectScopedViewSet):
    """Every promotion in the project, newest first; filter by environment, resource, status, reason, time."""

    serializer_class = PromotionSerializer
    filterset_class = PromotionFilter
    queryset = Promotion.objects.none()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Promotion.objects.none()
        return (
            Promotion.objects.filter(resource__environment__project=self.project)
            .select_related(*RELATED)
            .order_by("-queued_at", "-id")
        )

    def list(self, request, project):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(PromotionSerializer(page, many=True).data)

    def retrieve(self, request, project, pk):
        if not pk.isdigit() or len(pk) > 18:
            raise Http404("No such promotion.")
        return Response(PromotionSerializer(get_object_or_404(self.get_queryset(), pk=int(pk))).data)


@extend_schema(tags=["promotions"], parameters=[PROJECT_PARAM, ENVIRONMENT_PARAM, RESOURCE_PARAM])
class ResourcePromotionViewSet(EnvironmentScopedViewSet):
    """One resource's promotions, newest first."""

    serializer_class = PromotionSerializer
    queryset = Promotion.objects.none()

    def list(self, request, project, environment, resource):
        promotions = self.get_resource().promotions.select_related(*RELATED).order_by("-queued_at", "-id")
        page = self.paginate_queryset(promotions)
        return self.get_paginated_response(PromotionSerializer(page, many=True).data)
