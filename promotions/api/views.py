"""Publishing (by digest, or by tag through the registry) and the promotion history."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import F
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.response import Response

from core.api.errors import RegistryUnavailable
from environments import services
from environments.api import serializers as s
from environments.api.views import EnvironmentScopedViewSet
from environments.models import Artifact
from projects.api.base import ENVIRONMENT_PARAM, PROJECT_PARAM, RESOURCE_PARAM, ProjectScopedViewSet
from promotions import publishing
from promotions import selectors as promotion_selectors
from promotions.models import Promotion
from promotions.registry import RegistryError

from .filters import ProjectFilterBackend, PromotionFilter
from .serializers import PromotionSerializer, QueuedPublishSerializer


def _shown(promotions):
    """What PromotionSerializer writes, and nothing more: the promotion's own columns, and of its resource, its
    environment and its artifact the one column each that it shows, annotated (no object built per row for
    them, no resource's database URL decrypted per row, no user's password hash read)."""
    own = [field.name for field in Promotion._meta.concrete_fields]  # all of them: Django builds those fastest
    return (
        promotions.select_related(None).select_related("actor")  # str(user): its name only
        .only(*own, "actor__" + get_user_model().USERNAME_FIELD)
        .annotate(listed_resource=F("resource__name"), listed_environment=F("resource__environment__slug"),
                  listed_sequence=F("artifact__sequence"))
    )


@extend_schema(tags=["promotions"], parameters=[PROJECT_PARAM])
@extend_schema_view(retrieve=extend_schema(parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)]))
class ProjectPromotionViewSet(ProjectScopedViewSet):
    """Every promotion in the project, newest first, with its cause and the duration that fits it;
    filtered as the history page filters (environment, resource, cause, status, who, days), and by
    reason and time. A name not in the project, a bad date or `date_from` after `date_to` is a 400
    on that parameter."""

    serializer_class = PromotionSerializer
    filterset_class = PromotionFilter
    filter_backends = [ProjectFilterBackend]
    queryset = Promotion.objects.none()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Promotion.objects.none()
        return _shown(promotion_selectors.project_promotions(self.project))

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
        promotions = _shown(promotion_selectors.resource_promotions(self.get_resource()))
        page = self.paginate_queryset(promotions)
        return self.get_paginated_response(PromotionSerializer(page, many=True).data)


# --- artifacts --------------------------------------------------------------------------------


@extend_schema(tags=["artifacts"], parameters=[PROJECT_PARAM, ENVIRONMENT_PARAM, RESOURCE_PARAM])
@extend_schema_view(
    create=extend_schema(
        request=s.PublishSerializer, responses={201: s.ArtifactSerializer, 202: QueuedPublishSerializer},
        description="Publish: record that this image-source resource pushed `digest`. Its track-latest dependants "
        "follow (a queued Promotion each, applied by reconcile). Without `digest`, `tag` is resolved to a digest "
        "through the registry (once: the artifact keeps that digest). A registry that doesn't answer within "
        "HOIST_REQUEST_REGISTRY_WAIT_S (3 s) doesn't hold the request: 202 with `status: queued`, and Hoist "
        "resolves and publishes in the background (the audit log and the artifact list show the outcome). "
        "Needs the developer role (maintainer in a protected environment).",
    ),
)
class ArtifactViewSet(EnvironmentScopedViewSet):
    """Images a resource published, newest first."""

    serializer_class = s.ArtifactSerializer
    queryset = Artifact.objects.none()
    error_field_names = {}  # publish errors already use the request's names (digest, tag, repository)
    extra_error_codes = {"POST": (503,)}

    def list(self, request, project, environment, resource):
        artifacts = self.get_resource().artifacts.select_related("published_by").order_by("-sequence")
        page = self.paginate_queryset(artifacts)
        return self.get_paginated_response(s.ArtifactSerializer(page, many=True).data)

    def create(self, request, project, environment, resource):
        target = self.get_resource()
        self.require_change(target.environment, "publish images", action="artifact.publish", target=target)
        body = s.PublishSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            if data.get("digest"):
                artifact = services.artifact_publish(resource=target, origin=Artifact.Origin.API, actor=request.user, **data)
            else:
                artifact = publishing.artifact_publish_tag(
                    resource=target, origin=Artifact.Origin.API, actor=request.user,
                    tag=data.get("tag", ""), repository=data.get("repository", ""),
                    wait_s=settings.HOIST_REQUEST_REGISTRY_WAIT_S,
                )
        except RegistryError as exc:  # retried in the background so often it gave up at once: rare
            detail = str(exc) if request.user.is_staff else f"Can't resolve the tag: {exc.public}."
            raise RegistryUnavailable(detail, errors={"tag": [detail]}, headers={"Retry-After": "10"}) from None
        if isinstance(artifact, publishing.Queued):
            return Response(QueuedPublishSerializer(artifact).data, status=status.HTTP_202_ACCEPTED)
        return Response(s.ArtifactSerializer(artifact).data, status=status.HTTP_201_CREATED)
