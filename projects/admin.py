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
