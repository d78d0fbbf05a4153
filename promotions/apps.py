from django.apps import AppConfig


class PromotionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "promotions"

    def ready(self):
        # The engine subscribes to what desired state announces (environments.signals).
        from . import receivers  # noqa: F401
