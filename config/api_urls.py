"""REST API under /api/: /api/v1/… endpoints, the OpenAPI schema and its docs UI."""

from django.urls import include, path, re_path
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
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    # Everything else under /api/ is a JSON 404, never the HTML page of the web UI.
    re_path(r"^", not_found),
]
