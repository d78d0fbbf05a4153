"""The admin of notifications: projects' webhooks (writes through promotions.notifications, so the
rules, the roles and the audit trail are the API's) and their delivery logs (read-only).

Registered from `PromotionsConfig.ready()`."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from core.admin import ReadOnlyAdmin, ServiceAdmin, ServiceForm, run_for_each

from . import notifications
from .models import ProjectWebhook, WebhookDelivery

EVENT_CHOICES = [(event, event) for event in notifications.SUBSCRIBABLE]


class ProjectWebhookForm(ServiceForm):
    """The URL and the secret are write-only: never shown back; blank keeps what is stored."""

    url = forms.CharField(required=False, max_length=notifications.MAX_URL, widget=forms.TextInput(attrs={"size": 80}),
                          help_text="Where Hoist POSTs each event (https://…).")
    secret = forms.CharField(required=False, max_length=notifications.SECRET_MAX,
                             widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                             help_text=f"Signs every body (X-Hoist-Signature); {notifications.SECRET_MIN}+ characters, "
                                       "required for the Hoist format.")
    clear_secret = forms.BooleanField(required=False, help_text="Remove the stored secret (Slack format only).")
    events = forms.MultipleChoiceField(choices=EVENT_CHOICES, required=False, widget=forms.CheckboxSelectMultiple,
                                       help_text="None ticked: every event.")

    class Meta:
        model = ProjectWebhook
        fields = ["project", "name", "url", "format", "secret", "events", "active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["url"] = self.initial["secret"] = ""
        if self.instance.pk:
            self.fields["project"].disabled = True
            self.fields["url"].help_text = (f"Now {notifications.destination(self.instance.url)} (the rest is not shown). "
                                            "Leave blank to keep it.")
            self.fields["secret"].help_text = (f"Currently {'set' if self.instance.secret else 'not set'}. "
                                               "Leave blank to keep it.")
        else:
            self.fields["url"].required = True

    def service_values(self) -> dict:
        data = self.cleaned_data
        values = {"name": data.get("name") or "", "format": data.get("format") or "",
                  "events": list(data.get("events") or []), "active": bool(data.get("active"))}
        if data.get("url") or not self.instance.pk:
            values["url"] = data.get("url") or ""
        if data.get("clear_secret"):
            values["secret"] = ""
        elif data.get("secret") or not self.instance.pk:
            values["secret"] = data.get("secret") or ""
        return values

    def clean(self):
        data = super().clean()
        if self.instance.pk:
            self.validate_with(notifications.webhook_update, webhook=self.instance, **self.service_values())
        elif data.get("project") is not None:
            self.validate_with(notifications.webhook_create, project=data["project"], **self.service_values())
        return data


@admin.register(ProjectWebhook)
class ProjectWebhookAdmin(ServiceAdmin):
    form = ProjectWebhookForm
    list_display = ["name", "project", "where", "format", "event_list", "active", "secret_status", "created_at"]
    list_filter = ["format", "active", "project"]
    search_fields = ["name", "project__slug", "project__name"]
    list_select_related = ["project"]
    actions = ["send_test"]
    readonly_fields = ["latest_deliveries"]

    @admin.display(description="Sends to")
    def where(self, obj):
        return notifications.destination(obj.url)

    @admin.display(description="Events")
    def event_list(self, obj):
        return ", ".join(obj.events) or "every event"

    @admin.display(description="Secret")
    def secret_status(self, obj):
        return "set" if obj.secret else "not set"

    @admin.display(description="Latest deliveries")
    def latest_deliveries(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (f"{d.created_at:%Y-%m-%d %H:%M:%S}", d.event, d.status, d.attempts, d.response_code or "—", d.last_error[:200])
            for d in obj.deliveries.order_by("-id")[:20]))
        if not rows:
            return "Nothing sent yet."
        return format_html("<table><thead><tr><th>When (UTC)</th><th>Event</th><th>Status</th><th>Attempts</th>"
                           "<th>Response</th><th>Last error</th></tr></thead><tbody>{}</tbody></table>{}", rows,
                           format_html(' <a href="{}?webhook__id__exact={}">All deliveries</a>',
                                       reverse("admin:promotions_webhookdelivery_changelist"), obj.pk))

    def service_save(self, request, form, change):
        if change:
            stored = ProjectWebhook.objects.select_related("project").get(pk=form.instance.pk)
            return notifications.webhook_update(webhook=stored, actor=request.user, **form.service_values())
        return notifications.webhook_create(project=form.cleaned_data["project"], actor=request.user,
                                            **form.service_values())

    def service_delete(self, request, obj):
        notifications.webhook_delete(webhook=obj, actor=request.user)

    @admin.action(description="Send a test notification")
    def send_test(self, request, queryset):
        run_for_each(self, request, queryset.select_related("project"),
                     lambda hook, user: notifications.webhook_test(webhook=hook, actor=user), "Test notifications queued")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """The delivery log: read-only (deliveries are made by events and the Send test action)."""

    list_display = ["id", "webhook", "project", "event", "status", "attempts", "response_code", "created_at",
                    "delivered_at", "last_error_short"]
    list_filter = ["status", "event", "webhook__project"]
    search_fields = ["event", "last_error", "webhook__name"]
    list_select_related = ["webhook__project"]
    date_hierarchy = "created_at"

    @admin.display(description="Project", ordering="webhook__project__slug")
    def project(self, obj):
        return obj.webhook.project.slug

    @admin.display(description="Last error")
    def last_error_short(self, obj):
        return obj.last_error[:120]
