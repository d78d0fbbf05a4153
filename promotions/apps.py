import sys

from django.apps import AppConfig


class PromotionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "promotions"

    def ready(self):
        # The engine subscribes to what desired state announces (environments.signals).
        from . import receivers  # noqa: F401
        # Outgoing notifications hear environments.signals.event_happened; their admin pages.
        from . import admin_notifications, notifications  # noqa: F401

        if len(sys.argv) > 1 and sys.argv[1] in ("qcluster", "observe"):
            # A worker or the observer has no web server: its counters get a port of their own.
            from .metrics import serve_process_metrics

            serve_process_metrics()
