"""The operators' admin. Every write goes through the services (forms, saves,
deletes and actions), so a rule or role that refuses something in the API
refuses it here with the same message, and the audit trail records it."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count

from core.admin import ReadOnlyAdmin, ServiceAdmin, ServiceForm, error_text, run_for_each

from . import rules, selectors, services
from .models import Artifact, ChangeRequest, Cluster, EnvVar, Environment, RegistryHost, Resource, SourceType, TagWatch
from .selectors import clusters_visible_to


# --- clusters ---------------------------------------------------------------------------------


class SecretInput(forms.PasswordInput):
    def __init__(self):
        super().__init__(render_value=False, attrs={"autocomplete": "new-password"})


class ClusterForm(ServiceForm):
    """Credentials are write-only: the form never shows them back; blank keeps what is stored."""

    SECRET_FIELDS = services.CLUSTER_SECRETS
    token = forms.CharField(required=False, widget=SecretInput(), help_text="Leave blank to keep the stored token.")
    kubeconfig = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3, "placeholder": "(write-only)"}),
        help_text="Leave blank to keep the stored kubeconfig.",
    )
    registry_password = forms.CharField(required=False, widget=SecretInput(), help_text="Leave blank to keep.")
    clear_credentials = forms.BooleanField(required=False, help_text="Remove the stored token, kubeconfig and registry password.")

    class Meta:
        model = Cluster
        fields = list(services.CLUSTER_FIELDS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.SECRET_FIELDS:
            self.initial[field] = ""
            stored = getattr(self.instance, field, "") if self.instance.pk else ""
            self.fields[field].help_text = f"Currently {'set' if stored else 'not set'}. " + self.fields[field].help_text

    def clean_kubeconfig(self):
        value = self.cleaned_data["kubeconfig"]
        if value:
            try:
                rules.check_kubeconfig(value)
            except ValidationError as exc:
                raise ValidationError(exc.message_dict["kubeconfig"]) from None
        return value

    def service_values(self) -> dict:
        """What the service should write: blank secrets keep what is stored (or clear all, if asked)."""
        data = self.cleaned_data
        values = {field: data.get(field) or "" for field in services.CLUSTER_FIELDS if field not in self.SECRET_FIELDS}
        for field in self.SECRET_FIELDS:
            if data.get("clear_credentials"):
                values[field] = ""
            elif data.get(field):
                values[field] = data[field]
            elif not self.instance.pk:
                values[field] = ""
        return values

    def clean(self):
        data = super().clean()
        # Even with a field already refused, the service names every other bad field at once.
        if self.instance.pk:
            self.validate_with(services.cluster_update, cluster=self.instance, **self.service_values())
        else:
            self.validate_with(services.cluster_create, **self.service_values())
        return data


@admin.register(Cluster)
class ClusterAdmin(ServiceAdmin):
    form = ClusterForm
    list_display = ["name", "slug", "api_url", "registry", "token_status", "kubeconfig_status", "environment_count"]
    search_fields = ["name", "slug", "api_url", "registry"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_environments=Count("environments"))

    @admin.display(description="Environments", ordering="_environments")
    def environment_count(self, obj):
        return obj._environments

    @admin.display(description="Token")
    def token_status(self, obj):
        return obj.token_status

    @admin.display(description="Kubeconfig")
    def kubeconfig_status(self, obj):
        return obj.kubeconfig_status

    def service_save(self, request, form, change):
        if change:
            stored = Cluster.objects.get(pk=form.instance.pk)
            return services.cluster_update(cluster=stored, actor=request.user, **form.service_values())
        return services.cluster_create(actor=request.user, **form.service_values())

    def service_delete(self, request, obj):
        services.cluster_delete(cluster=obj, actor=request.user)


# --- registries and tag watches ----------------------------------------------------------------


class RegistryHostForm(ServiceForm):
    class Meta:
        model = RegistryHost
        fields = list(services.REGISTRY_FIELDS)

    def service_values(self) -> dict:
        return {field: self.cleaned_data.get(field) for field in services.REGISTRY_FIELDS}

    def clean(self):
        data = super().clean()
        if self.instance.pk:
            self.validate_with(services.registry_update, registry=self.instance, **self.service_values())
        return data


@admin.register(RegistryHost)
class RegistryHostAdmin(ServiceAdmin):
    """Registries appear by themselves once Hoist calls them; an operator tunes them here."""

    form = RegistryHostForm
    list_display = ["host", "interval", "rate", "concurrency_limit", "protected", "watched", "requests_per_min",
                    "last_error_short"]
    search_fields = ["host"]
    readonly_fields = ["host", "requests_per_min", "throttled_until", "last_error", "last_error_at", "created_at"]

    def get_queryset(self, request):
        return selectors.registries_with_watch_counts()

    def has_add_permission(self, request):
        return False  # a row is made when Hoist first calls the host

    @admin.display(description="Watch interval (s)")
    def interval(self, obj):
        return obj.effective()["watch_interval_s"]

    @admin.display(description="Requests/s")
    def rate(self, obj):
        return obj.effective()["rate_per_s"]

    @admin.display(description="Concurrency")
    def concurrency_limit(self, obj):
        return obj.effective()["concurrency"] or "no limit"

    @admin.display(description="Keep tags", boolean=True)
    def protected(self, obj):
        return obj.effective()["protect"]

    @admin.display(description="Watched tags", ordering="watched_tags")
    def watched(self, obj):
        return obj.watched_tags

    @admin.display(description="Requests last minute")
    def requests_per_min(self, obj):
        return obj.requests_last_minute()

    @admin.display(description="Last error")
    def last_error_short(self, obj):
        return obj.last_error[:120]

    def service_save(self, request, form, change):
        stored = RegistryHost.objects.get(pk=form.instance.pk)
        return services.registry_update(registry=stored, actor=request.user, **form.service_values())

    def service_delete(self, request, obj):
        raise PermissionDenied("Registries are not deleted: they come back the next time Hoist calls them.")

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(TagWatch)
class TagWatchAdmin(ReadOnlyAdmin):
    """What the tag watcher checks (read-only: the watches follow the resources)."""

    list_display = ["__str__", "digest_short", "checked_at", "changed_at", "next_check_at", "checks", "last_error"]
    list_filter = ["host"]
    search_fields = ["repository", "tag"]

    @admin.display(description="Digest")
    def digest_short(self, obj):
        return obj.digest[:19]


# --- environments -----------------------------------------------------------------------------


class EnvironmentForm(ServiceForm):
    CREATE_FIELDS = ("project", "name", "slug", "cluster", "namespace", "protected", "position")

    class Meta:
        model = Environment
        fields = ["project", "name", "slug", "cluster", "namespace", "protected", "position"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["position"].required = False
        if self.instance.pk:
            # Moving an environment would strand what runs there (environment_update refuses it).
            for field in ("project", "slug", "cluster", "namespace"):
                self.fields[field].disabled = True
                self.fields[field].help_text = "Can't change; create a new environment instead."

    def service_values(self) -> dict:
        data = self.cleaned_data
        if self.instance.pk:
            return {field: data[field] for field in services.ENVIRONMENT_CHANGEABLE if data.get(field) is not None}
        # Not self.Meta.fields: the admin's form class lists the read-only created_at there as well.
        return {field: data.get(field) for field in self.CREATE_FIELDS}

    def clean(self):
        data = super().clean()
        if not self.errors:
            if self.instance.pk:
                self.validate_with(services.environment_update, environment=self.instance, **self.service_values())
            else:
                self.validate_with(services.environment_create, **self.service_values())
        return data


@admin.register(Environment)
class EnvironmentAdmin(ServiceAdmin):
    form = EnvironmentForm
    list_display = ["name", "project", "slug", "cluster", "namespace", "protected", "position", "resource_count"]
    list_filter = ["project", "cluster", "protected"]
    search_fields = ["name", "slug", "namespace", "project__name", "project__slug"]
    list_select_related = ["project", "cluster"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at"]

    def get_prepopulated_fields(self, request, obj=None):
        return {} if obj is not None else self.prepopulated_fields

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "cluster":
            # The clusters this operator may place an environment on (environment_create checks it again).
            kwargs["queryset"] = clusters_visible_to(request.user).order_by("name")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_resources=Count("resources"))

    @admin.display(description="Resources", ordering="_resources")
    def resource_count(self, obj):
        return obj._resources

    def service_save(self, request, form, change):
        if change:
            stored = Environment.objects.select_related("project", "cluster").get(pk=form.instance.pk)
            return services.environment_update(environment=stored, actor=request.user, **form.service_values())
        return services.environment_create(actor=request.user, **form.service_values())

    def service_delete(self, request, obj):
        services.environment_delete(environment=obj, actor=request.user)


# --- resources --------------------------------------------------------------------------------


class EnvVarForm(forms.ModelForm):
    """A secret's value is never shown back; leaving it blank keeps the stored one."""

    value = forms.CharField(required=False, widget=forms.TextInput(attrs={"size": 40}))

    class Meta:
        model = EnvVar
        fields = ["name", "value", "secret"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.secret:
            self.initial["value"] = ""
            self.fields["value"].widget = SecretInput()
            self.fields["value"].help_text = "Secret: currently set; leave blank to keep."


class EnvVarInline(admin.TabularInline):
    model = EnvVar
    form = EnvVarForm
    extra = 0


class ResourceForm(ServiceForm):
    database_url = forms.CharField(
        required=False, widget=SecretInput(), label="Database URL",
        help_text="Secret, write-only. Leave blank to keep the stored value.",
    )
    clear_database_url = forms.BooleanField(required=False, label="Clear database URL")
    ports = forms.JSONField(
        required=False, initial=list,
        help_text='List of ports, e.g. [8080] or [{"name": "http", "port": 8080, "protocol": "TCP"}].',
    )

    class Meta:
        model = Resource
        fields = [
            "environment", "name", "kind", "source_type", "image", "promote_from", "binding", "pinned_digest",
            "runtime", "ports", "replicas", "ingress_host", "database_url", "schedule",
            "follow", "soak_seconds", "rollback_on_failure", "progress_deadline_seconds",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in ("follow", "soak_seconds", "progress_deadline_seconds"):
            self.fields[field].required = False  # left out: the resource's defaults
        self.initial["database_url"] = ""
        if self.instance.pk:
            self.fields["database_url"].help_text = (
                f"Secret, currently {'set' if self.instance.database_url else 'not set'}; leave blank to keep."
            )
            for field in ("environment", "name", "kind"):
                self.fields[field].disabled = True

    def clean(self):
        """Run the services' own validation, so admin and API refuse the same things."""
        data = super().clean()
        if self.errors:
            return data
        ports = data.get("ports") if data.get("ports") is not None else []
        source = {
            "source_type": data.get("source_type") or SourceType.IMAGE,
            "image": data.get("image") or "",
            "promote_from": data.get("promote_from"),
            "binding": data.get("binding") or "",
            "pinned_digest": (data.get("pinned_digest") or "").strip(),
        }
        config = {
            "runtime": data.get("runtime") or "", "ports": ports, "replicas": data.get("replicas"),
            "ingress_host": data.get("ingress_host") or "", "schedule": data.get("schedule") or "",
            "follow": data.get("follow") or "healthy", "soak_seconds": data.get("soak_seconds") or 0,
            "rollback_on_failure": bool(data.get("rollback_on_failure")),
            "progress_deadline_seconds": data.get("progress_deadline_seconds") or 600,
        }
        if data.get("clear_database_url"):
            config["database_url"] = ""
        elif data.get("database_url"):
            config["database_url"] = data["database_url"]
        if self.instance.pk:
            self.service_call = {"changes": {**source, **config}}
            self.validate_with(services.resource_update, resource=self.instance, **source, **config)
        else:
            arguments = {"environment": data["environment"], "name": data["name"], "kind": data["kind"], **source, **config}
            self.service_call = {"arguments": arguments}
            self.validate_with(services.resource_create, **arguments)
        return data


class ResourceAdmin(ServiceAdmin):
    form = ResourceForm
    inlines = [EnvVarInline]
    list_display = ["name", "environment", "kind", "source_summary", "short_digest", "rollout_summary", "running_digest", "reconciled_at"]
    list_filter = ["kind", "source_type", "binding", "phase", "environment__project", "environment"]
    search_fields = ["name", "image", "current_digest", "pinned_digest", "environment__slug", "environment__project__slug"]
    list_select_related = ["environment__project", "promote_from__environment__project"]
    autocomplete_fields = ["promote_from"]
    readonly_fields = ["rollout_summary", "current_digest", "current_image", "healthy_digest", "healthy_at", "failed_digest",
                       "applied_seq", "artifact_seq", "phase", "message", "reconciled_at", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["environment", "name", "kind"]}),
        ("Source", {"fields": ["source_type", "image", "promote_from", "binding", "pinned_digest"]}),
        ("Config", {"fields": ["runtime", "ports", "replicas", "ingress_host", "database_url", "clear_database_url", "schedule"]}),
        ("Rollout", {"fields": ["follow", "soak_seconds", "rollback_on_failure", "progress_deadline_seconds"]}),
        ("Status: desired and running", {"fields": readonly_fields}),
    ]
    actions = ["reconcile_now", "promote_upstream_current", "switch_to_track_latest"]

    @admin.display(description="Source")
    def source_summary(self, obj):
        if obj.source_type == SourceType.PROMOTE:
            how = "track" if obj.binding == "track_latest" else f"pin {obj.pinned_digest[7:19]}"
            return f"← {obj.promote_from} ({how})"
        return obj.image

    @admin.display(description="Desired", ordering="current_digest")
    def short_digest(self, obj):
        return obj.current_digest[:19]

    @admin.display(description="Running healthy", ordering="healthy_digest")
    def running_digest(self, obj):
        return obj.healthy_digest[:19]

    @admin.display(description="Rollout", ordering="phase")
    def rollout_summary(self, obj):
        return obj.rollout["summary"]

    def service_save(self, request, form, change):
        # The form's clean() ran the same service with validate_only; it checks again under its locks.
        if change:
            stored = Resource.objects.get(pk=form.instance.pk)
            return services.resource_update(resource=stored, actor=request.user, **form.service_call["changes"])
        return services.resource_create(actor=request.user, **form.service_call["arguments"])

    def save_related(self, request, form, formsets, change):
        # Env vars go through the service too, so secrets are handled one way everywhere.
        # What is stored decides what a blank value means (the inline forms' own instances
        # already carry the posted flags): a stored secret left blank keeps its value, and
        # the service refuses to make it plain without a new one.
        saved = {var.name: var for var in EnvVar.objects.filter(resource=form.instance)}
        env = []
        for formset in formsets:
            for inline_form in formset.forms:
                data = getattr(inline_form, "cleaned_data", None)
                if not data or data.get("DELETE") or not data.get("name"):
                    continue
                value = data.get("value") or ""
                before = saved.get(data["name"])
                keeps_secret = before is not None and before.secret and not value
                env.append({"name": data["name"], "value": None if keeps_secret else value, "secret": bool(data.get("secret"))})
        for formset in formsets:  # what the admin's change message reads
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        stored = [{"name": v.name, "value": None if v.secret else v.value, "secret": v.secret} for v in saved.values()]
        if env == stored:
            return  # nothing changed in the inline: no second write, no second audit entry
        try:
            services.resource_update(resource=form.instance, env=env, actor=request.user)
        except (ValidationError, PermissionDenied) as exc:
            self.message_user(request, f"Environment variables not saved: {error_text(exc)}", messages.ERROR)

    def service_delete(self, request, obj):
        services.resource_delete(resource=obj, actor=request.user)

    @admin.action(description="Reconcile now")
    def reconcile_now(self, request, queryset):
        run_for_each(self, request, queryset, lambda r, user: services.reconcile_request(resource=r, actor=user), "Reconcile queued")

    @admin.action(description="Promote: pin to the upstream's current digest")
    def promote_upstream_current(self, request, queryset):
        run_for_each(self, request, queryset, lambda r, user: services.resource_promote_upstream_current(resource=r, actor=user), "Promoted")

    @admin.action(description="Switch to track latest")
    def switch_to_track_latest(self, request, queryset):
        run_for_each(self, request, queryset, lambda r, user: services.resource_track_latest(resource=r, actor=user), "Now tracking latest")


admin.site.register(Resource, ResourceAdmin)


# --- artifacts --------------------------------------------------------------------------------


class ArtifactForm(ServiceForm):
    class Meta:
        model = Artifact
        fields = ["resource", "digest", "tag", "repository"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "repository" not in self.fields:  # the read-only view of a published artifact
            return
        self.fields["repository"].required = False
        self.fields["repository"].help_text = "Leave blank to use the resource's image repository."
        self.fields["resource"].queryset = Resource.objects.filter(source_type=SourceType.IMAGE).select_related("environment__project")

    def clean(self):
        data = super().clean()
        if data.get("resource") and data.get("digest"):
            self.validate_with(
                services.artifact_publish, resource=data["resource"], digest=data["digest"], tag=data.get("tag") or "",
                repository=data.get("repository") or "", origin=Artifact.Origin.ADMIN,
            )
        return data

    def _post_clean(self):
        # The Artifact row (its sequence above all) is built by the publish service, not the form.
        pass


@admin.register(Artifact)
class ArtifactAdmin(ServiceAdmin):
    """Published images. Adding one here publishes it (track-latest dependants follow)."""

    form = ArtifactForm
    list_display = ["resource", "sequence", "short_digest", "tag", "origin", "published_by", "published_at"]
    list_filter = ["origin", "resource__environment__project", "resource__environment"]
    search_fields = ["digest", "tag", "repository", "resource__name"]
    list_select_related = ["resource__environment__project", "published_by"]
    date_hierarchy = "published_at"

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [field.name for field in self.model._meta.fields]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # history: what ran must stay explainable

    @admin.display(description="Digest", ordering="digest")
    def short_digest(self, obj):
        return obj.digest[:19]

    def service_save(self, request, form, change):
        return services.artifact_publish(
            resource=form.cleaned_data["resource"], digest=form.cleaned_data["digest"],
            tag=form.cleaned_data.get("tag") or "", repository=form.cleaned_data.get("repository") or "",
            origin=Artifact.Origin.ADMIN, actor=request.user,
        )


# --- approvals ------------------------------------------------------------------------------------


class ChangeRequestForm(ServiceForm):
    """Decide on a request: approve or reject (with a reason), through the same services as the API."""

    decision = forms.ChoiceField(choices=[("", "—"), ("approve", "Approve"), ("reject", "Reject")], required=False)
    reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="Required to reject; a note when approving.")
    freeze_override = forms.CharField(required=False, help_text="During a freeze: why it must run now (else it waits for the thaw).")

    class Meta:
        model = ChangeRequest
        fields = []

    def clean(self):
        data = super().clean()
        decision = data.get("decision")
        if decision == "reject" and not (data.get("reason") or "").strip():
            self.add_error("reason", "Say why the change is rejected.")
        if decision:
            try:
                services.change_request_may_decide(request=self.instance, actor=self.actor)
            except (ValidationError, PermissionDenied) as exc:
                self.add_error("decision", error_text(exc))
        return data


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ServiceAdmin):
    form = ChangeRequestForm
    list_display = ["__str__", "kind", "status", "approvals", "required", "requested_by", "requested_at"]
    list_filter = ["status", "kind", "resource__environment__project"]
    search_fields = ["resource__name", "to_digest"]
    # What the request is, read-only; then the decision this operator makes (the form's own fields).
    readonly_fields = ["resource", "kind", "status", "from_digest", "to_digest", "source", "required", "requested_by",
                       "requested_at", "decided_at", "decision_list"]
    fields = readonly_fields + ["decision", "reason", "freeze_override"]

    def has_add_permission(self, request):
        return False  # requests come from changes of what runs

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Approvals")
    def approvals(self, obj):
        return obj.decisions.filter(approved=True).count()

    @admin.display(description="Decisions")
    def decision_list(self, obj):
        return "; ".join(f"{d.user}: {'approved' if d.approved else 'rejected'}{' — ' + d.reason if d.reason else ''}"
                         for d in obj.decisions.select_related("user")) or "none yet"

    def service_save(self, request, form, change):
        decision = form.cleaned_data.get("decision")
        stored = ChangeRequest.objects.get(pk=form.instance.pk)
        if decision == "approve":
            return services.change_request_approve(request=stored, actor=request.user, reason=form.cleaned_data["reason"],
                                                   freeze_override=form.cleaned_data["freeze_override"])
        if decision == "reject":
            return services.change_request_reject(request=stored, actor=request.user, reason=form.cleaned_data["reason"])
        return stored
