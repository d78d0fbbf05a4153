"""The one request body format: JSON, bounded in size, strict (no NaN/Infinity)."""

from __future__ import annotations

import json

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from .errors import RequestTooLarge


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.HOIST_API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        meta = request.META if request is not None else {}
        try:
            length = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        too_large = RequestTooLarge(f"The request body is larger than the limit of {limit} bytes.")
        if length > limit:
            raise too_large
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise too_large
        if not raw:
            return None
        try:
            data = json.loads(raw, parse_constant=_refuse_constant)
            has_nul = _has_nul(data)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error: {str(exc)[:200]}") from None
        if has_nul:
            # PostgreSQL text can't hold NUL, and no Hoist value needs one.
            raise ParseError("NUL characters (\\u0000) are not allowed in request bodies.")
        return data


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False
