from django.apps import AppConfig


class WebConfig(AppConfig):
    """The browser pages. They sit on top of every app and are imported by none."""

    name = "web"
