"""Kubernetes `Status` errors, worded like the real kube-apiserver.

Clients (and the product code written against them) branch on `.status`,
`reason` and sometimes the message text, so these mirror
k8s.io/apimachinery/pkg/api/errors and pkg/util/validation/field closely.
"""
from __future__ import annotations

import json

# field.ErrorType -> (cause type, human string)
FIELD_ERROR_TYPES = {
    "Required": ("FieldValueRequired", "Required value"),
    "Invalid": ("FieldValueInvalid", "Invalid value"),
    "NotSupported": ("FieldValueNotSupported", "Unsupported value"),
    "Duplicate": ("FieldValueDuplicate", "Duplicate value"),
    "NotFound": ("FieldValueNotFound", "Not found"),
    "Forbidden": ("FieldValueForbidden", "Forbidden"),
    "TooLong": ("FieldValueTooLong", "Too long"),
    "TooMany": ("FieldValueTooMany", "Too many"),
    "TypeInvalid": ("FieldValueTypeInvalid", "Invalid value"),
}
# Error types whose body never repeats the bad value (field.Error.ErrorBody).
_NO_VALUE = {"Required", "Forbidden", "TooLong", "TooMany"}


def go_value(value) -> str:
    """Roughly Go's %#v / %q rendering used in field error bodies."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        inner = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(json.dumps(v) for v in value) + "}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class FieldError:
    """One validation problem (k8s field.Error)."""

    def __init__(self, type_: str, field: str, value=None, detail: str = ""):
        self.type = type_
        self.field = field
        self.value = value
        self.detail = detail

    def body(self) -> str:
        human = FIELD_ERROR_TYPES[self.type][1]
        text = human if self.type in _NO_VALUE else f"{human}: {go_value(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"FieldError({self!s})"

    def cause(self) -> dict:
        return {"reason": FIELD_ERROR_TYPES[self.type][0], "message": self.body(), "field": self.field}


# Constructors named like field.Required(), field.Invalid() ...
def required(field, detail=""):
    return FieldError("Required", field, None, detail)


def invalid(field, value, detail=""):
    return FieldError("Invalid", field, value, detail)


def not_supported(field, value, supported):
    detail = "supported values: " + ", ".join(json.dumps(s) for s in supported)
    return FieldError("NotSupported", field, value, detail)


def duplicate(field, value):
    return FieldError("Duplicate", field, value)


def not_found_field(field, value):
    return FieldError("NotFound", field, value)


def forbidden(field, detail):
    return FieldError("Forbidden", field, None, detail)


def too_long(field, limit):
    return FieldError("TooLong", field, None, f"may not be more than {limit} bytes")


class ApiError(Exception):
    """Raised anywhere in request handling; rendered as a v1 Status."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message}
        if self.reason:
            body["reason"] = self.reason
        if self.details:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(rt, name) -> dict:
    details = {"name": name}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.plural
    return details


def not_found(rt, name) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.group_resource} "{name}" not found', _details(rt, name))


def namespace_not_found(name) -> ApiError:
    return ApiError(404, "NotFound", f'namespaces "{name}" not found', {"name": name, "kind": "namespaces"})


def already_exists(rt, name) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rt.group_resource} "{name}" already exists', _details(rt, name))


def conflict(rt, name, why="the object has been modified; please apply your changes to the latest "
                             "version and try again") -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rt.group_resource} "{name}": {why}',
                    _details(rt, name))


def invalid_object(rt, name, errors: list[FieldError]) -> ApiError:
    qualified = rt.kind + (f".{rt.group}" if rt.group else "")
    if len(errors) == 1:
        agg = str(errors[0])
    else:
        agg = "[" + ", ".join(str(e) for e in errors) + "]"
    details = {"name": name}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.kind
    details["causes"] = [e.cause() for e in errors]
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {agg}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden_error(rt, name, why) -> ApiError:
    return ApiError(403, "Forbidden", f'{rt.group_resource} "{name}" is forbidden: {why}', _details(rt, name))


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
                    {})


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def unsupported_media_type(content_type, accepted) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{', '.join(accepted)}", {})


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def internal_error(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}",
                    {"causes": [{"message": message}]})


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


# Status codes the fault injector may answer with.
REASON_FOR_CODE = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    409: "Conflict", 410: "Expired", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
    503: "ServiceUnavailable", 504: "Timeout",
}


def injected(code: int, retry_after: float | None) -> ApiError:
    reason = REASON_FOR_CODE.get(code, "")
    headers = {}
    details = None
    if code == 429:
        message = "Too many requests, please try again later."
    elif code == 500:
        message = "Internal error occurred: sandbox injected fault"
        details = {"causes": [{"message": "sandbox injected fault"}]}
    elif code == 503:
        message = "the server is currently unable to handle the request"
    elif code == 504:
        message = "the server was unable to return a response in the time allotted, but may still be " \
                  "processing the request"
    else:
        message = f"sandbox injected fault ({code})"
    if code in (429, 503) and retry_after is not None:
        seconds = int(retry_after) if float(retry_after).is_integer() else retry_after
        headers["Retry-After"] = str(seconds)
        details = {"retryAfterSeconds": int(retry_after)}
    return ApiError(code, reason, message, details, headers)
