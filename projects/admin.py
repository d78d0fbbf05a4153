from django.contrib import admin

from .models import Membership, Project


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "environment_count", "member_count", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at"]
    inlines = [MembershipInline]

    def get_queryset(self, request):
        from django.db.models import Count

        return super().get_queryset(request).annotate(
            _environments=Count("environments", distinct=True), _members=Count("memberships", distinct=True)
        )

    @admin.display(description="Environments", ordering="_environments")
    def environment_count(self, obj):
        return obj._environments

    @admin.display(description="Members", ordering="_members")
    def member_count(self, obj):
        return obj._members


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "user__email", "project__name", "project__slug"]
    autocomplete_fields = ["user", "project"]
    list_select_related = ["user", "project"]


# --- API tokens and the audit trail -----------------------------------------------------------

from django import forms  # noqa: E402
from django.core.exceptions import ValidationError  # noqa: E402
from django.db import transaction  # noqa: E402
from django.template.response import TemplateResponse  # noqa: E402
from django.urls import reverse  # noqa: E402

from . import audit, services  # noqa: E402
from .models import ApiToken, AuditEntry  # noqa: E402


class ApiTokenAddForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["user", "name", "expires_at"]

    def clean_expires_at(self):
        from django.utils import timezone

        value = self.cleaned_data.get("expires_at")
        if value is not None and value <= timezone.now():
            raise ValidationError("The expiry must be in the future (or empty for none).")
        return value


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created through the service (the key is shown once) and revoked, never edited."""

    list_display = ["name", "user", "prefix", "state", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at", "expires_at"]
    search_fields = ["name", "prefix", "user__username"]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]
    actions = ["revoke"]
    readonly_fields = ["user", "name", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at"]

    @admin.display(description="State")
    def state(self, obj):
        return obj.state()

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def has_change_permission(self, request, obj=None):
        return False  # read-only once created; revoking is the action

    def save_model(self, request, obj, form, change):
        if change:
            return
        token, key = services.token_create(
            user=form.cleaned_data["user"], name=form.cleaned_data["name"],
            expires_at=form.cleaned_data.get("expires_at"), actor=request.user,
        )
        obj.pk, obj._key = token.pk, key
        audit.record(action="token.create", actor=request.user, target=token, request=request, via="admin",
                     changes={"name": token.name, "prefix": token.prefix, "user": token.user.get_username()})

    def response_add(self, request, obj, post_url_continue=None):
        token = ApiToken.objects.select_related("user").get(pk=obj.pk)
        response = TemplateResponse(request, "projects/tokens/admin_created.html", {
            **self.admin_site.each_context(request), "title": "API token created", "token": token,
            "key": obj._key, "back": reverse("admin:projects_apitoken_changelist"),
        })
        response["Cache-Control"] = "no-store"
        return response

    def log_addition(self, request, obj, message):
        # The token row came from the service; the admin's LogEntry still records who added it.
        obj = ApiToken.objects.get(pk=obj.pk)
        return super().log_addition(request, obj, message)

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        with transaction.atomic():
            for token in queryset.select_related("user"):
                services.token_revoke(token=token, actor=request.user)
                audit.record(action="token.revoke", actor=request.user, target=token, request=request, via="admin",
                             changes={"prefix": token.prefix})
        self.message_user(request, f"Revoked {queryset.count()} token(s).")

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit trail, read-only."""

    list_display = ["created_at", "actor_label", "action", "target_repr", "project", "via", "ip", "token"]
    list_filter = ["action", "via", "project"]
    search_fields = ["actor_label", "target_repr", "action", "ip"]
    list_select_related = ["project", "token"]
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
