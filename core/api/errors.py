"""One error body for every API failure, and the one place that names fields.

Every error — validation, 401, 403, 404, 405, 406, 409, 412, 413, 415, 428 —
answers with

    {"detail": "<one sentence>", "code": "<machine code>", "errors": {"<field>": ["<message>", …]}}

`errors` is keyed by the field of the *request* at fault, dotted for nested
ones (`source.digest`, `config.ports`, `config.env.1.name`); it is empty when
no field is to blame. Services raise Django ValidationErrors keyed by model
field names; FIELD_NAMES turns those into the names the client sent.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

# Model/service field name → API field name. One table for the whole API.
FIELD_NAMES = {
    NON_FIELD_ERRORS: "non_field_errors",
    # A resource's source.
    "source_type": "source.type",
    "image": "source.image",
    "promote_from": "source.resource",
    "binding": "source.binding",
    "pinned_digest": "source.digest",
    # A resource's own config.
    "runtime": "config.runtime",
    "ports": "config.ports",
    "replicas": "config.replicas",
    "ingress_host": "config.ingress_host",
    "database_url": "config.database_url",
    "schedule": "config.schedule",
    "env": "config.env",
    "follow": "config.follow",
    "soak_seconds": "config.soak_seconds",
    "rollback_on_failure": "config.rollback_on_failure",
    "progress_deadline_seconds": "config.progress_deadline_seconds",
}


def api_field(name: str, field_names: dict[str, str] | None = None) -> str:
    return (FIELD_NAMES if field_names is None else field_names).get(name, name)


class HoistAPIError(exceptions.APIException):
    """An API error that carries field errors besides its detail."""

    def __init__(self, detail: str | None = None, code: str | None = None, errors: dict | None = None,
                 headers: dict | None = None):
        super().__init__(detail, code)
        self.errors = errors or {}
        self.headers = headers or {}


class Conflict(HoistAPIError):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


def conflict(exc: DjangoValidationError, field_names: dict[str, str] | None = None) -> Conflict:
    """A service's refusal of a change the current state forbids (e.g. dependants), as a 409."""
    errors = field_errors(exc, field_names)
    return Conflict(next(iter(errors.values()))[0], errors=errors)


class RegistryUnavailable(HoistAPIError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The registry could not be reached; try again."
    default_code = "registry_unavailable"


class PreconditionFailed(HoistAPIError):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "The resource changed since you read it."
    default_code = "precondition_failed"


class PreconditionRequired(HoistAPIError):
    status_code = 428
    default_detail = "This request needs an If-Match header."
    default_code = "precondition_required"


class RequestTooLarge(HoistAPIError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def field_errors(exc: DjangoValidationError, field_names: dict[str, str] | None = None) -> dict[str, list[str]]:
    """A Django ValidationError as {api field: [messages]}."""
    if hasattr(exc, "error_dict"):
        result: dict[str, list[str]] = {}
        for field, messages in exc.message_dict.items():
            result.setdefault(api_field(field, field_names), []).extend(messages)
        return result
    return {"non_field_errors": list(exc.messages)}


def validation_error(exc: DjangoValidationError, field_names: dict[str, str] | None = None) -> exceptions.ValidationError:
    return exceptions.ValidationError(field_errors(exc, field_names))


def flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"a.b.0.c": [messages]}."""
    out: dict[str, list[str]] = {}

    def add(key: str, message: Any) -> None:
        out.setdefault(key or "non_field_errors", []).append(str(message))

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for child_key, child in node.items():
                child_key = str(child_key)
                if child_key in ("non_field_errors", NON_FIELD_ERRORS):
                    walk(child, key)
                else:
                    walk(child, f"{key}.{child_key}" if key else child_key)
        elif isinstance(node, (list, tuple)):
            if all(not isinstance(item, (dict, list, tuple)) for item in node):
                for item in node:
                    add(key, item)
            else:
                for index, item in enumerate(node):
                    if item:
                        walk(item, f"{key}.{index}" if key else str(index))
        else:
            add(key, node)

    walk(detail, prefix)
    return out


def _summary(errors: dict[str, list[str]]) -> str:
    if not errors:
        return "Invalid input."
    field, messages = next(iter(errors.items()))
    more = sum(len(m) for m in errors.values()) - 1
    first = messages[0] if field == "non_field_errors" else f"{field}: {messages[0]}"
    return first + (f" (and {more} more)" if more > 0 else "")


def exception_handler(exc, context):
    from rest_framework.views import set_rollback  # here: rest_framework.views imports the parser, which imports us

    view = context.get("view")
    field_names = getattr(view, "error_field_names", None)
    if isinstance(exc, DjangoValidationError):
        exc = validation_error(exc, field_names)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) if exc.args and str(exc) else None)
    elif isinstance(exc, DjangoPermissionDenied):
        # Views resolve the project first (404 for non-members), so a 403 never reveals a name.
        exc = exceptions.PermissionDenied(str(exc) if exc.args and str(exc) else None)
    elif isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge()

    if not isinstance(exc, exceptions.APIException):
        return None

    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = "%d" % exc.wait
    headers.update(getattr(exc, "headers", None) or {})

    if isinstance(exc, exceptions.ValidationError):
        errors = flatten(exc.detail)
        body = {"detail": _summary(errors), "code": "invalid", "errors": errors}
    else:
        detail = exc.detail
        if isinstance(detail, (list, dict)):  # an APIException raised with structured detail
            errors = flatten(detail)
            detail = _summary(errors)
        else:
            errors = {}
        errors = {**errors, **getattr(exc, "errors", {})}
        code = getattr(detail, "code", None) or exc.default_code
        body = {"detail": str(detail), "code": str(code), "errors": errors}
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


class ErrorSerializer(serializers.Serializer):
    """The body of every error response."""

    detail = serializers.CharField(help_text="What went wrong, in one sentence.")
    code = serializers.CharField(help_text="Machine-readable: invalid, not_found, permission_denied, not_authenticated, authentication_failed, precondition_failed, precondition_required, request_too_large, unsupported_media_type, conflict, …")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages by request field (dotted for nested fields); empty when no field is at fault.",
    )
