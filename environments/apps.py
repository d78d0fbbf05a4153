from django.apps import AppConfig


class EnvironmentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "environments"

    def ready(self):
        from . import checks  # noqa: F401 (registers the system checks)
        from . import admin_freeze  # noqa: F401 (freeze windows, overrides and approval settings in the admin)
