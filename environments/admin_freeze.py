"""The admin of freeze windows (written through `environments.freeze`, as the API and the pages
do), the overrides maintainers gave during freezes (read-only), and the environment's
approval settings on its change page. Imported by `EnvironmentsConfig.ready()`."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from core.admin import ReadOnlyAdmin, ServiceAdmin, ServiceForm

from . import freeze
from .admin import EnvironmentAdmin, EnvironmentForm
from .models import Environment, FreezeOverride, FreezeWindow

GOVERNANCE_FIELDS = ("required_approvals", "approve_automatic")


# --- the environment's approval settings ---------------------------------------------------------


class GovernedEnvironmentForm(EnvironmentForm):
    class Meta(EnvironmentForm.Meta):
        fields = list(dict.fromkeys([*EnvironmentForm.Meta.fields, *GOVERNANCE_FIELDS]))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "required_approvals" in self.fields:
            self.fields["required_approvals"].required = False  # left out: stays as it is


class GovernedEnvironmentAdmin(EnvironmentAdmin):
    """The environment admin, with its approval settings (changed through environment_update)
    and when it is frozen until (as the observer last noticed)."""

    form = GovernedEnvironmentForm
    list_display = [*EnvironmentAdmin.list_display, "required_approvals", "frozen_until"]

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        # Set once the environment exists (environment_create doesn't take them).
        return fields if obj is not None else [f for f in fields if f not in GOVERNANCE_FIELDS]


if admin.site.is_registered(Environment):
    admin.site.unregister(Environment)
admin.site.register(Environment, GovernedEnvironmentAdmin)


# --- freeze windows -----------------------------------------------------------------------------


class FreezeWindowForm(ServiceForm):
    weekdays = forms.TypedMultipleChoiceField(
        choices=list(enumerate(freeze.WEEKDAYS)), coerce=int, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="Weekly windows: the days they start on.",
    )

    class Meta:
        model = FreezeWindow
        fields = ["environment", "name", "kind", "starts_at", "ends_at", "weekdays", "start_time", "end_time", "timezone"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["starts_at"].help_text = "Once windows (UTC)."
        self.fields["ends_at"].help_text = "Once windows (UTC)."
        self.fields["start_time"].help_text = "Weekly windows: local time in the time zone below."
        self.fields["end_time"].help_text = "Weekly windows: at or before the start runs past midnight."
        if self.instance.pk:
            self.fields["environment"].disabled = True

    def service_values(self) -> dict:
        return {field: self.cleaned_data.get(field) for field in freeze.WINDOW_FIELDS if field in self.cleaned_data}

    def clean(self):
        data = super().clean()
        if self.instance.pk:
            self.validate_with(freeze.freeze_window_update, window=self.instance, **self.service_values())
        elif data.get("environment") is not None:
            self.validate_with(freeze.freeze_window_create, environment=data["environment"], **self.service_values())
        return data


@admin.register(FreezeWindow)
class FreezeWindowAdmin(ServiceAdmin):
    form = FreezeWindowForm
    list_display = ["name", "environment", "kind", "when", "created_by", "created_at"]
    list_filter = ["kind", "environment__project"]
    search_fields = ["name", "environment__slug", "environment__project__slug"]
    list_select_related = ["environment__project", "created_by"]

    @admin.display(description="When")
    def when(self, obj):
        return freeze.summary(obj)

    def service_save(self, request, form, change):
        if change:
            stored = FreezeWindow.objects.select_related("environment__project").get(pk=form.instance.pk)
            return freeze.freeze_window_update(window=stored, actor=request.user, **form.service_values())
        return freeze.freeze_window_create(environment=form.cleaned_data["environment"], actor=request.user,
                                           **form.service_values())

    def service_delete(self, request, obj):
        freeze.freeze_window_delete(window=obj, actor=request.user)


@admin.register(FreezeOverride)
class FreezeOverrideAdmin(ReadOnlyAdmin):
    """Changes maintainers let in during a freeze, with their reasons (read-only: the audit trail's)."""

    list_display = ["resource", "digest_short", "reason", "actor", "created_at"]
    list_filter = ["resource__environment__project"]
    search_fields = ["resource__name", "digest", "reason"]
    list_select_related = ["resource__environment__project", "actor"]

    @admin.display(description="Digest")
    def digest_short(self, obj):
        return obj.digest[:19] or "(the change's)"
