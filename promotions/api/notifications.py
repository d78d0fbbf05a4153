"""A project's notification webhooks and their delivery logs: /projects/{project}/webhooks/.

Every member reads them (the URL only as scheme and host, the secret as
set/not set); maintainers add, change, delete and test them. The writes are
promotions.notifications' services, which check and audit them.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from core.api.fields import StrictBooleanField, StrictCharField, StrictSerializer
from environments.api.serializers import MaskedField, MaskedReadField, keep_masked
from projects.api.base import PROJECT_PARAM, ProjectScopedViewSet
from projects.models import Role
from promotions import notifications
from promotions.models import ProjectWebhook, WebhookDelivery

WEBHOOK_PARAM = OpenApiParameter("id", int, OpenApiParameter.PATH, description="Webhook id.")
WHAT = notifications.WHAT


class StrictChoiceField(serializers.ChoiceField):
    default_error_messages = {"invalid_choice": "{input!r} is not one of the choices."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class WebhookSerializer(serializers.ModelSerializer):
    """A webhook as every member of the project may read it."""

    url = serializers.SerializerMethodField(help_text="Scheme and host only (`https://hooks.slack.com/…`): the rest of "
                                                      "a webhook's URL is often its credential and is never returned.")
    secret = MaskedReadField(help_text='"set" or "not set"; the secret itself is never returned.')
    events = serializers.ListField(child=serializers.CharField(), help_text="Event names; empty: every event.")

    class Meta:
        model = ProjectWebhook
        fields = ["id", "name", "url", "format", "events", "active", "secret", "created_at"]

    def get_url(self, hook: ProjectWebhook) -> str:
        return notifications.destination(hook.url)


class WebhookWriteSerializer(StrictSerializer):
    """A new webhook. Unknown keys are refused, each named."""

    id = serializers.IntegerField(read_only=True)
    name = StrictCharField(max_length=100)
    url = StrictCharField(max_length=notifications.MAX_URL,
                          help_text="Where Hoist POSTs each event: https:// (or http://), a host the outbound policy allows.")
    format = StrictChoiceField(choices=ProjectWebhook.Format.choices, required=False,
                               help_text="`slack`: a Slack-compatible incoming-webhook body; `hoist`: the event as JSON.")
    secret = MaskedField(max_length=notifications.SECRET_MAX,
                         help_text=f"Signs every body (X-Hoist-Signature); {notifications.SECRET_MIN} characters or more, "
                                   'required for the `hoist` format. Reads back as "set"/"not set"; writing those keeps it.')
    events = serializers.ListField(child=StrictChoiceField(choices=notifications.SUBSCRIBABLE), required=False,
                                   allow_empty=True, max_length=len(notifications.SUBSCRIBABLE),
                                   help_text="Events to send; empty or absent: every event.")
    active = StrictBooleanField(required=False, help_text="false pauses the webhook (Send test still works).")
    created_at = serializers.DateTimeField(read_only=True)


class WebhookUpdateSerializer(WebhookWriteSerializer):
    """Only the keys sent change. `url` sent back as a GET returned it keeps the stored URL."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False


class DeliverySerializer(serializers.ModelSerializer):
    """One event sent (or being sent) to a webhook: queued, retrying, delivered or failed."""

    body = serializers.CharField(help_text="The JSON body exactly as sent (every attempt sends the same bytes).")

    class Meta:
        model = WebhookDelivery
        fields = ["id", "event", "status", "attempts", "response_code", "last_error", "next_attempt_at", "created_at",
                  "delivered_at", "body"]


@extend_schema(tags=["notifications"], parameters=[PROJECT_PARAM])
@extend_schema_view(
    list=extend_schema(description="The project's webhooks (every member may read them)."),
    create=extend_schema(request=WebhookWriteSerializer, responses={201: WebhookSerializer},
                         description="Add a webhook (maintainers). The URL is checked against the outbound policy "
                                     "(a 400 on `url` if refused)."),
    retrieve=extend_schema(parameters=[WEBHOOK_PARAM]),
    partial_update=extend_schema(parameters=[WEBHOOK_PARAM], request=WebhookUpdateSerializer,
                                 responses=WebhookSerializer, description="Change a webhook (maintainers)."),
    destroy=extend_schema(parameters=[WEBHOOK_PARAM], responses={204: None},
                          description="Delete a webhook and its delivery log (maintainers)."),
    test=extend_schema(parameters=[WEBHOOK_PARAM], request=None, responses={202: DeliverySerializer},
                       description="Send a `test` event to this webhook (maintainers): 202 with the queued delivery; "
                                   "its log shows the outcome."),
    deliveries=extend_schema(parameters=[WEBHOOK_PARAM], responses=DeliverySerializer(many=True),
                             description="The webhook's delivery log, newest first (the newest "
                                         f"{notifications.KEEP_DELIVERIES} are kept)."),
)
class WebhookViewSet(ProjectScopedViewSet):
    """Outgoing notifications: webhooks that get a POST for each event of the project."""

    serializer_class = WebhookSerializer
    queryset = ProjectWebhook.objects.none()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ProjectWebhook.objects.none()
        return ProjectWebhook.objects.filter(project=self.project).order_by("name", "pk")

    def _get(self) -> ProjectWebhook:
        pk = self.kwargs["pk"]
        hook = self.get_queryset().filter(pk=int(pk)).first() if pk.isdigit() and len(pk) <= 18 else None
        if hook is None:
            raise NotFound(f"No webhook {pk[:40]!r} in project {self.project.slug}.")
        hook.project = self.project
        return hook

    def list(self, request, project):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(WebhookSerializer(page, many=True).data)

    def retrieve(self, request, project, pk):
        return Response(WebhookSerializer(self._get()).data)

    def create(self, request, project):
        self.require(Role.MAINTAINER, WHAT, action="webhook.create")
        body = WebhookWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = keep_masked(body.validated_data, ("secret",))
        hook = notifications.webhook_create(project=self.project, actor=request.user, **values)
        return Response(WebhookSerializer(hook).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, project, pk):
        hook = self._get()
        self.require(Role.MAINTAINER, WHAT, action="webhook.update", target=hook)
        body = WebhookUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = keep_masked(body.validated_data, ("secret",))
        if values.get("url") == notifications.destination(hook.url):
            del values["url"]  # what a GET returned, sent back: keep the stored URL
        hook = notifications.webhook_update(webhook=hook, actor=request.user, **values)
        return Response(WebhookSerializer(hook).data)

    def destroy(self, request, project, pk):
        hook = self._get()
        self.require(Role.MAINTAINER, WHAT, action="webhook.delete", target=hook)
        notifications.webhook_delete(webhook=hook, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["post"])
    def test(self, request, project, pk):
        hook = self._get()
        self.require(Role.MAINTAINER, WHAT, action="webhook.test", target=hook)
        delivery = notifications.webhook_test(webhook=hook, actor=request.user)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["get"])
    def deliveries(self, request, project, pk):
        hook = self._get()
        page = self.paginate_queryset(hook.deliveries.order_by("-id"))
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)
