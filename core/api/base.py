"""The base of every API viewset: refuses NUL characters at the door (PostgreSQL text can't hold them)."""

from __future__ import annotations

from rest_framework import viewsets
from rest_framework.exceptions import NotFound, ValidationError


class HoistViewSet(viewsets.GenericViewSet):
    """Base of every API viewset. Writes go through the services, which audit them."""

    # Any path segment reaches the view, which answers a JSON 404 for what does not exist.
    lookup_value_regex = "[^/]+"

    def initial(self, request, *args, **kwargs):
        # PostgreSQL text can't hold NUL: refuse it at the door rather than fail in a query.
        if any("\x00" in str(value) for value in kwargs.values()):
            raise NotFound()
        bad = [key for key, values in request.query_params.lists() if "\x00" in key or any("\x00" in v for v in values)]
        if bad:
            raise ValidationError({key.replace("\x00", "") or "query": ["NUL characters are not allowed."] for key in bad})
        super().initial(request, *args, **kwargs)
