"""REST API under /api/: /api/v1/… endpoints, the OpenAPI schema and its docs UI."""

from django.http import HttpResponse
from django.template import engines
from django.urls import include, path, re_path
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.decorators import api_view, authentication_classes, permission_classes, schema
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.routers import SimpleRouter

from environments.api.views import ClusterViewSet, EnvironmentViewSet, ResourceViewSet
from projects.api.views import MemberViewSet, ProjectViewSet, TokenViewSet, UserViewSet
from promotions.api.views import ArtifactViewSet, ProjectPromotionViewSet, ResourcePromotionViewSet


@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@authentication_classes([])
@permission_classes([AllowAny])
@schema(None)
def not_found(request):
    raise NotFound("No such API endpoint.")


# drf-spectacular's ReDoc page links Google Fonts even when its JavaScript comes from
# drf-spectacular-sidecar (SPECTACULAR_SETTINGS["REDOC_DIST"] = "SIDECAR"): the same page
# without those links (ReDoc falls back to the browser's sans-serif font). ReDoc itself
# (2.x) always shows Redocly's logo from cdn.redoc.ly in its menu; the page's CSP keeps
# images on this server, so the browser never asks for it (ReDoc hides a logo that fails).
REDOC_OFFLINE = engines["django"].from_string(
    """{% extends "drf_spectacular/redoc.html" %}{% block head %}
    <title>{{ title|default:"Redoc" }}</title>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <style>body { margin: 0; padding: 0; }</style>
    {% endblock head %}"""
)


class OfflineRedocView(SpectacularRedocView):
    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        context = super().get(request, *args, **kwargs).data
        response = HttpResponse(REDOC_OFFLINE.render(context, request))
        response["Content-Security-Policy"] = "img-src 'self' data:"
        return response


# Anything up to the next "/": the views answer 404 (JSON) for what does not exist.
SLUG = r"[^/]+"
PROJECT = rf"projects/(?P<project>{SLUG})"
ENVIRONMENT = rf"{PROJECT}/environments/(?P<environment>{SLUG})"
RESOURCE = rf"{ENVIRONMENT}/resources/(?P<resource>{SLUG})"

router = SimpleRouter()
router.register(r"projects", ProjectViewSet, basename="api-project")
router.register(rf"{PROJECT}/members", MemberViewSet, basename="api-member")
router.register(rf"{PROJECT}/environments", EnvironmentViewSet, basename="api-environment")
router.register(rf"{PROJECT}/promotions", ProjectPromotionViewSet, basename="api-project-promotion")
router.register(rf"{ENVIRONMENT}/resources", ResourceViewSet, basename="api-resource")
router.register(rf"{RESOURCE}/artifacts", ArtifactViewSet, basename="api-artifact")
router.register(rf"{RESOURCE}/promotions", ResourcePromotionViewSet, basename="api-resource-promotion")
router.register(r"clusters", ClusterViewSet, basename="api-cluster")
router.register(r"tokens", TokenViewSet, basename="api-token")
router.register(r"users", UserViewSet, basename="api-user")

urlpatterns = [
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", OfflineRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    # Everything else under /api/ is a JSON 404, never the HTML page of the web UI.
    re_path(r"^", not_found),
]
