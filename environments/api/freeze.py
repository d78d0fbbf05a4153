"""An environment's freeze windows: /projects/{project}/environments/{environment}/freeze-windows/.

Members read them; maintainers add, change and delete them. The serializers check
JSON types only; every rule (kinds, time zones, weekdays, the limit) is
`environments.freeze`'s, the same for the pages and the admin.
"""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, status
from rest_framework.response import Response

from core.api.fields import StrictCharField, StrictIntegerField, StrictSerializer
from environments import freeze
from environments.models import FreezeWindow
from projects.api.base import ENVIRONMENT_PARAM, PROJECT_PARAM
from projects.models import Role

from .views import EnvironmentScopedViewSet

WINDOW_PARAM = OpenApiParameter("id", str, OpenApiParameter.PATH, description="The freeze window's id.")


class FreezeWindowSerializer(serializers.ModelSerializer):
    weekdays = serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=6),
                                     help_text="Weekly: 0 = Monday … 6 = Sunday; [] for once.")
    start_time = serializers.TimeField(allow_null=True, help_text="Weekly: local time in `timezone`.")
    end_time = serializers.TimeField(allow_null=True, help_text="Weekly: local time; at or before the start: the next day.")
    created_by = serializers.SerializerMethodField()
    summary = serializers.SerializerMethodField(help_text='In words, e.g. "weekly, Fri 18:00 → 06:00 (next day) Europe/Berlin".')

    class Meta:
        model = FreezeWindow
        fields = ["id", "name", "kind", "starts_at", "ends_at", "weekdays", "start_time", "end_time", "timezone",
                  "summary", "created_by", "created_at"]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_created_by(self, window: FreezeWindow) -> str | None:
        return window.created_by.get_username() if window.created_by_id else None

    def get_summary(self, window: FreezeWindow) -> str:
        return freeze.summary(window)


class FreezeWindowWriteSerializer(StrictSerializer):
    name = StrictCharField(max_length=200)
    kind = serializers.ChoiceField(choices=FreezeWindow.Kind.choices)
    starts_at = serializers.DateTimeField(required=False, allow_null=True,
                                          help_text="Once: ISO 8601 with an offset (without one: UTC).")
    ends_at = serializers.DateTimeField(required=False, allow_null=True, help_text="Once: after `starts_at`.")
    weekdays = serializers.ListField(child=StrictIntegerField(min_value=0, max_value=6), required=False,
                                     max_length=7, help_text="Weekly: 0 = Monday … 6 = Sunday, at least one.")
    start_time = serializers.TimeField(required=False, allow_null=True, help_text="Weekly: HH:MM, local time.")
    end_time = serializers.TimeField(required=False, allow_null=True,
                                     help_text="Weekly: HH:MM; at or before the start runs past midnight.")
    timezone = StrictCharField(required=False, max_length=64, help_text="IANA name, e.g. Europe/Berlin (default UTC).")
    id = serializers.IntegerField(read_only=True)
    summary = serializers.CharField(read_only=True)
    created_by = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class FreezeWindowUpdateSerializer(FreezeWindowWriteSerializer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False


@extend_schema(tags=["environments"], parameters=[PROJECT_PARAM, ENVIRONMENT_PARAM])
@extend_schema_view(
    list=extend_schema(description="The environment's freeze windows. While one is on, nothing automatic changes "
                       "what runs there; a person's change needs a maintainer's override with a reason."),
    create=extend_schema(request=FreezeWindowWriteSerializer, responses={201: FreezeWindowSerializer},
                         description="Add a window (maintainers). `once`: `starts_at`, `ends_at`. `weekly`: "
                         "`weekdays`, `start_time`, `end_time` in `timezone`. At most 50 per environment."),
    retrieve=extend_schema(parameters=[WINDOW_PARAM]),
    partial_update=extend_schema(parameters=[WINDOW_PARAM], request=FreezeWindowUpdateSerializer,
                                 responses=FreezeWindowSerializer,
                                 description="Change a window (maintainers); only what is given changes."),
    destroy=extend_schema(parameters=[WINDOW_PARAM], responses={204: None}),
)
class FreezeWindowViewSet(EnvironmentScopedViewSet):
    """Freeze windows of an environment."""

    serializer_class = FreezeWindowSerializer
    lookup_url_kwarg = "id"
    queryset = FreezeWindow.objects.none()

    def windows(self):
        return (FreezeWindow.objects.filter(environment=self.environment)
                .select_related("environment__project", "created_by").order_by("created_at", "pk"))

    def _get(self) -> FreezeWindow:
        window_id = str(self.kwargs["id"])
        if not window_id.isdigit() or len(window_id) > 18:
            raise Http404("No such freeze window.")
        return get_object_or_404(self.windows(), pk=int(window_id))

    def list(self, request, project, environment):
        page = self.paginate_queryset(self.windows())
        return self.get_paginated_response(FreezeWindowSerializer(page, many=True).data)

    def retrieve(self, request, project, environment, id):
        return Response(FreezeWindowSerializer(self._get()).data)

    def create(self, request, project, environment):
        self.require(Role.MAINTAINER, "change freeze windows", action="freeze_window.create", target=self.environment)
        body = FreezeWindowWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        window = freeze.freeze_window_create(environment=self.environment, actor=request.user, **body.validated_data)
        return Response(FreezeWindowSerializer(self.windows().get(pk=window.pk)).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, project, environment, id):
        window = self._get()
        self.require(Role.MAINTAINER, "change freeze windows", action="freeze_window.update", target=window)
        body = FreezeWindowUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        window = freeze.freeze_window_update(window=window, actor=request.user, **body.validated_data)
        return Response(FreezeWindowSerializer(self.windows().get(pk=window.pk)).data)

    def destroy(self, request, project, environment, id):
        window = self._get()
        self.require(Role.MAINTAINER, "change freeze windows", action="freeze_window.delete", target=window)
        freeze.freeze_window_delete(window=window, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
