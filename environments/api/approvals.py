"""Change requests: changes of what runs that wait for maintainers' approvals.

/api/v1/projects/{project}/approvals/ lists them (any member), and
…/{id}/approve/, …/{id}/reject/, …/{id}/cancel/ decide (maintainers other than
the requester; the requester may cancel). The services decide who may, count
the approvals and apply the change.
"""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.fields import StrictCharField, StrictSerializer
from environments import services
from environments.models import ChangeRequest
from projects.api.base import PROJECT_PARAM, ProjectScopedViewSet
from projects.models import Role

ID_PARAM = OpenApiParameter("id", int, OpenApiParameter.PATH)


class DecisionSerializer(serializers.Serializer):
    user = serializers.CharField(source="user.username")
    approved = serializers.BooleanField()
    reason = serializers.CharField()
    decided_at = serializers.DateTimeField()


class ChangeRequestSerializer(serializers.ModelSerializer):
    environment = serializers.CharField(source="resource.environment.slug")
    resource = serializers.CharField(source="resource.name")
    requested_by = serializers.SerializerMethodField()
    approvals = serializers.SerializerMethodField(help_text="Approvals given so far.")
    decisions = DecisionSerializer(many=True, read_only=True)
    binding = serializers.SerializerMethodField(help_text="The binding the change sets (track_latest or pin_digest).")

    class Meta:
        model = ChangeRequest
        fields = ["id", "environment", "resource", "kind", "status", "from_digest", "to_digest", "binding", "required",
                  "approvals", "decisions", "requested_by", "requested_at", "decided_at", "reason"]

    def get_requested_by(self, request: ChangeRequest) -> str:
        return request.requested_by.username if request.requested_by_id else "Hoist (track latest)"

    def get_approvals(self, request: ChangeRequest) -> int:
        return sum(1 for decision in request.decisions.all() if decision.approved)

    def get_binding(self, request: ChangeRequest) -> str:
        return request.source.get("binding", "") if request.kind != ChangeRequest.Kind.AUTOMATIC else "track_latest"


class ApproveSerializer(StrictSerializer):
    reason = StrictCharField(required=False, allow_blank=True, max_length=2000, help_text="Optional note.")
    freeze_override = StrictCharField(required=False, allow_blank=True, max_length=2000,
                                      help_text="During a freeze: why this change must go in now (else it waits for the thaw).")


class RejectSerializer(StrictSerializer):
    reason = StrictCharField(max_length=2000, help_text="Why the change is rejected (required).")


class AwaitingApprovalSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["awaiting_approval"])
    detail = serializers.CharField()
    change_request = ChangeRequestSerializer()


def awaiting_body(request: ChangeRequest) -> dict:
    return {
        "status": "awaiting_approval",
        "detail": f"{request.resource.environment.name} needs {request.required} approval"
                  f"{'s' if request.required != 1 else ''} from maintainers other than you before this runs.",
        "change_request": ChangeRequestSerializer(request).data,
    }


@extend_schema(tags=["approvals"], parameters=[PROJECT_PARAM])
@extend_schema_view(
    list=extend_schema(parameters=[
        OpenApiParameter("status", str, enum=list(ChangeRequest.Status.values), description="Only these (repeatable)."),
        OpenApiParameter("environment", str), OpenApiParameter("resource", str)]),
    retrieve=extend_schema(parameters=[ID_PARAM]),
    approve=extend_schema(parameters=[ID_PARAM], request=ApproveSerializer, responses=ChangeRequestSerializer),
    reject=extend_schema(parameters=[ID_PARAM], request=RejectSerializer, responses=ChangeRequestSerializer),
    cancel=extend_schema(parameters=[ID_PARAM], request=None, responses=ChangeRequestSerializer),
)
class ChangeRequestViewSet(ProjectScopedViewSet):
    """Changes of what runs waiting for (or decided by) maintainers' approvals, newest first."""

    serializer_class = ChangeRequestSerializer
    queryset = ChangeRequest.objects.none()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ChangeRequest.objects.none()
        found = (ChangeRequest.objects.filter(resource__environment__project=self.project)
                 .select_related("resource__environment", "requested_by").prefetch_related("decisions__user")
                 .order_by("-requested_at", "-id"))
        statuses = self.request.query_params.getlist("status")
        unknown = sorted(set(statuses) - set(ChangeRequest.Status.values))
        if unknown:
            raise serializers.ValidationError({"status": [f"Unknown status {unknown[0]!r}; one of "
                                                          f"{', '.join(ChangeRequest.Status.values)}."]})
        if statuses:
            found = found.filter(status__in=statuses)
        if self.request.query_params.get("environment"):
            found = found.filter(resource__environment__slug=self.request.query_params["environment"])
        if self.request.query_params.get("resource"):
            found = found.filter(resource__name=self.request.query_params["resource"])
        return found

    def _get(self, pk: str) -> ChangeRequest:
        if not str(pk).isdigit() or len(str(pk)) > 18:
            raise Http404("No such change request.")
        return get_object_or_404(self.get_queryset(), pk=int(pk))

    def list(self, request, project):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ChangeRequestSerializer(page, many=True).data)

    def retrieve(self, request, project, pk):
        return Response(ChangeRequestSerializer(self._get(pk)).data)

    @action(detail=True, methods=["post"])
    def approve(self, request, project, pk):
        change = self._get(pk)
        self.require(Role.MAINTAINER, "approve changes", action="change_request.approve", target=change.resource)
        body = ApproveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.change_request_approve(request=change, actor=request.user, **body.validated_data)
        return Response(ChangeRequestSerializer(self._get(pk)).data)

    @action(detail=True, methods=["post"])
    def reject(self, request, project, pk):
        change = self._get(pk)
        self.require(Role.MAINTAINER, "reject changes", action="change_request.reject", target=change.resource)
        body = RejectSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.change_request_reject(request=change, actor=request.user, **body.validated_data)
        return Response(ChangeRequestSerializer(self._get(pk)).data)

    @action(detail=True, methods=["post"])
    def cancel(self, request, project, pk):
        change = self._get(pk)
        services.change_request_cancel(request=change, actor=request.user)
        return Response(ChangeRequestSerializer(self._get(pk)).data)
