from django.contrib import admin

from core.admin import ReadOnlyAdmin, run_for_each
from environments import services
from environments.models import Keep

from .models import Promotion


@admin.register(Promotion)
class PromotionAdmin(admin.ModelAdmin):
    """History: read-only. A failed promotion is retried by reconciling its resource."""

    list_display = ["resource", "short_from", "short_to", "reason", "status", "who", "queued_at", "applied_at", "latency_s",
                    "healthy_at", "healthy_latency_s"]
    list_filter = ["status", "reason", "resource__environment__project", "resource__environment"]
    search_fields = ["resource__name", "from_digest", "to_digest", "error", "actor__username", "actor_label"]
    list_select_related = ["resource__environment__project", "actor"]
    date_hierarchy = "queued_at"
    actions = ["retry"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # view only; the history is not editable

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="From")
    def short_from(self, obj):
        return obj.from_digest[:19]

    @admin.display(description="To")
    def short_to(self, obj):
        return obj.to_digest[:19]

    @admin.action(description="Retry: reconcile the selected promotions' resources")
    def retry(self, request, queryset):
        run_for_each(
            self, request, queryset.select_related("resource__environment__project"),
            lambda resource, user: services.reconcile_request(resource=resource, actor=user),
            "Reconcile queued", key=lambda promotion: promotion.resource,
        )


@admin.register(Keep)
class KeepAdmin(ReadOnlyAdmin):
    """Keep tags (promotions/keeping.py): read-only, the schedule and every change write them."""

    list_display = ["repository", "short_digest", "state", "children_count", "detail", "kept_at", "released_at", "checked_at"]
    list_filter = ["state"]
    search_fields = ["repository", "digest", "tag", "detail"]
    date_hierarchy = "created_at"

    @admin.display(description="Digest", ordering="digest")
    def short_digest(self, obj):
        return obj.digest[:19]

    @admin.display(description="Children")
    def children_count(self, obj):
        return len(obj.children)
