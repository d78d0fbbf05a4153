"""Browser pages (filled in by the web UI)."""

urlpatterns: list = []
