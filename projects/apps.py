from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "projects"

    def ready(self):
        # Registers how the API's authentication classes appear in the OpenAPI schema.
        from .api import schema  # noqa: F401
