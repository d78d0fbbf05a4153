"""REST API under /api/ (filled in by the API)."""

urlpatterns: list = []
