"""Projects, members, tokens and the audit trail. Every write goes through `projects.services`."""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.template.response import TemplateResponse
from django.urls import reverse

from core.admin import ReadOnlyAdmin, ServiceAdmin, ServiceForm, run_for_each

from . import services
from .models import ApiToken, AuditEntry, Membership, Project


class MembershipInline(admin.TabularInline):
    """Members at a glance; they are changed on the Membership page (through the service,
    which keeps at least one maintainer)."""

    model = Membership
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ProjectForm(ServiceForm):
    class Meta:
        model = Project
        fields = ["name", "slug", "description"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["slug"].disabled = True

    def clean(self):
        data = super().clean()
        if not self.errors and self.instance.pk:
            self.validate_with(services.project_update, project=self.instance, name=data["name"],
                               description=data.get("description") or "")
        elif not self.errors:
            self.validate_with(services.project_create, slug=data["slug"], name=data["name"],
                               description=data.get("description") or "")
        return data


@admin.register(Project)
class ProjectAdmin(ServiceAdmin):
    form = ProjectForm
    list_display = ["name", "slug", "environment_count", "member_count", "created_at"]
    search_fields = ["name", "slug"]
    readonly_fields = ["created_at"]
    inlines = [MembershipInline]

    def get_prepopulated_fields(self, request, obj=None):
        return {} if obj is not None else {"slug": ["name"]}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _environments=Count("environments", distinct=True), _members=Count("memberships", distinct=True)
        )

    @admin.display(description="Environments", ordering="_environments")
    def environment_count(self, obj):
        return obj._environments

    @admin.display(description="Members", ordering="_members")
    def member_count(self, obj):
        return obj._members

    def service_save(self, request, form, change):
        data = form.cleaned_data
        if change:
            stored = Project.objects.get(pk=form.instance.pk)
            return services.project_update(project=stored, actor=request.user, name=data["name"],
                                           description=data.get("description") or "")
        return services.project_create(actor=request.user, slug=data["slug"], name=data["name"],
                                       description=data.get("description") or "")

    def service_delete(self, request, obj):
        services.project_delete(project=obj, actor=request.user)


class MembershipForm(ServiceForm):
    class Meta:
        model = Membership
        fields = ["project", "user", "role"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            for field in ("project", "user"):
                self.fields[field].disabled = True

    def clean(self):
        data = super().clean()
        if not self.errors:
            self.validate_with(services.membership_set, project=data["project"], username=data["user"].username,
                               role=data["role"])
        return data


@admin.register(Membership)
class MembershipAdmin(ServiceAdmin):
    form = MembershipForm
    list_display = ["user", "project", "role", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "user__email", "project__name", "project__slug"]
    autocomplete_fields = ["user", "project"]
    list_select_related = ["user", "project"]

    def service_save(self, request, form, change):
        data = form.cleaned_data
        return services.membership_set(project=data["project"], username=data["user"].username, role=data["role"],
                                       actor=request.user)

    def service_delete(self, request, obj):
        services.membership_remove(membership=obj, actor=request.user)


# --- API tokens and the audit trail -----------------------------------------------------------


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
        run_for_each(self, request, queryset.select_related("user"),
                     lambda token, user: services.token_revoke(token=token, actor=user), "Revoked")

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """The audit trail, read-only."""

    list_display = ["created_at", "actor_label", "action", "outcome", "target_repr", "project", "via", "ip", "token"]
    list_filter = ["outcome", "action", "via", "project"]
    search_fields = ["actor_label", "target_repr", "action", "ip", "message"]
    list_select_related = ["project", "token"]
    date_hierarchy = "created_at"
