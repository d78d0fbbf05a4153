"""What the admin pages of every app share: service refusals shown next to their field or by name."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.urls import reverse

from .errors import refusal_text as error_text  # noqa: F401 (the admin's name; messages read as the audit trail does)


def attach_errors(form: forms.Form, exc: Exception) -> None:
    """Put a service's refusal next to the form field it names; the rest at the top."""
    if isinstance(exc, ValidationError) and hasattr(exc, "message_dict"):
        for field, messages_ in exc.message_dict.items():
            target = field if field in form.fields else None
            if target is not None and target in form.errors:
                continue  # the field's own cleaning said it already
            for message in messages_:
                form.add_error(target, message)
    else:
        form.add_error(None, error_text(exc))


def run_for_each(modeladmin, request, queryset, service, done: str, key=lambda obj: obj) -> None:
    """Call `service` for each selected row; report every refusal by name, never a 500."""
    ok = 0
    for obj in queryset:
        try:
            service(key(obj), request.user)
            ok += 1
        except (ValidationError, PermissionDenied) as exc:
            modeladmin.message_user(request, f"{obj}: {error_text(exc)}", messages.ERROR)
    if ok:
        modeladmin.message_user(request, f"{done}: {ok}.", messages.SUCCESS)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records Hoist writes itself (the audit trail, tag watches, keep tags, deliveries,
    freeze overrides): operators look at them here, nobody adds, edits or deletes them."""

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ServiceAdmin(admin.ModelAdmin):
    """A ModelAdmin whose writes all go through service functions.

    - The form's `clean()` calls the service with `validate_only=True` (the form
      has `self.actor`), so a refusal appears next to its field, and is audited;
    - `save_form` calls the service for real and returns what it wrote
      (subclasses implement `service_save`); `save_model` writes nothing more;
    - deletes call `service_delete`; a refusal is shown as an error message
      instead of Django's "deleted successfully".
    """

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.actor = request.user  # a class made for this request: safe to set
        return form

    def service_save(self, request, form, change):
        raise NotImplementedError

    def service_delete(self, request, obj):
        raise NotImplementedError

    def save_form(self, request, form, change):
        return self.service_save(request, form, change)

    def save_model(self, request, obj, form, change):
        form.instance = obj  # written by the service in save_form

    def save_related(self, request, form, formsets, change):
        pass  # services write related rows themselves

    def delete_model(self, request, obj):
        try:
            self.service_delete(request, obj)
        except (ValidationError, PermissionDenied) as exc:
            request._hoist_refused = True
            self.message_user(request, error_text(exc), messages.ERROR)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            try:
                self.service_delete(request, obj)
            except (ValidationError, PermissionDenied) as exc:
                self.message_user(request, f"{obj}: {error_text(exc)}", messages.ERROR)

    def response_delete(self, request, obj_display, obj_id):
        if getattr(request, "_hoist_refused", False):
            opts = self.model._meta
            return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj_id]))
        return super().response_delete(request, obj_display, obj_id)

    def get_deleted_objects(self, objs, request):
        # The service decides (and explains) what may be deleted, not Django's
        # generic "protected"/permissions page: history rows go with their owner.
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, model_count, set(), []


class ServiceForm(forms.ModelForm):
    """A ModelForm whose model validation is the service's (called from `clean()`), not the model's.

    Model-level validation would judge the raw form values before the
    service normalises them; the service's answer is the one that counts.
    """

    actor = None  # set by ServiceAdmin.get_form

    def validate_with(self, service, **arguments):
        """Run `service(validate_only=True, actor=…, **arguments)`; put a refusal on the form."""
        try:
            return service(validate_only=True, actor=self.actor, **arguments)
        except (ValidationError, PermissionDenied) as exc:
            attach_errors(self, exc)
            return None

    def _post_clean(self):
        from django.forms.models import construct_instance

        self.instance = construct_instance(self, self.instance, self._meta.fields, self._meta.exclude)
