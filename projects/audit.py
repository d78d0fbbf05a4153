"""The audit trail: one AuditEntry per write, whoever makes it (API, pages, admin, services).

`record()` is deliberately generic: give it the actor, an action name
(`<thing>.<verb>`), the target and a summary of the changes; pass the
request when there is one and the entry also says where the write came
from (IP, user agent, API token). Secret values never reach the table:
`redact()` replaces them wherever they appear in `changes`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from .models import AuditEntry, Project

# Keys whose values are secrets wherever they appear in a change summary.
SECRET_KEYS = frozenset({"database_url", "token", "kubeconfig", "registry_password", "password", "key"})
REDACTED = "***"


def redact(value: Any) -> Any:
    """A copy of `value` with secrets replaced by REDACTED.

    Keys in SECRET_KEYS are redacted; an env var item ({"name", "value",
    "secret": true}) keeps its name but not its value.
    """
    if isinstance(value, dict):
        secret_item = bool(value.get("secret")) and "value" in value
        out = {}
        for key, item in value.items():
            if key in SECRET_KEYS or (secret_item and key == "value"):
                out[key] = REDACTED if item not in (None, "") else item
            else:
                out[key] = redact(item)
        return out
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value


def client_ip(request) -> str | None:
    """The caller's address; behind a TLS proxy (HOIST_BEHIND_TLS_PROXY) the first X-Forwarded-For hop."""
    if request is None:
        return None
    address = ""
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        address = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[0].strip()
    address = address or request.META.get("REMOTE_ADDR", "")
    from django.core.validators import validate_ipv46_address
    from django.core.exceptions import ValidationError

    try:
        validate_ipv46_address(address)
    except ValidationError:
        return None
    return address


def record(
    *, action: str, actor=None, target=None, target_type: str = "", target_id: Any = "", target_repr: str = "",
    project: Project | None = None, changes: dict | None = None, request=None, token=None, via: str = "",
    actor_label: str = "",
) -> AuditEntry:
    """Write one audit entry. Call it inside the transaction of the write it describes."""
    if target is not None:
        target_type = target_type or target._meta.model_name
        target_id = target_id or target.pk
        target_repr = target_repr or str(target)
        if project is None:
            project = _project_of(target)
    if request is not None and token is None:
        auth = getattr(request, "auth", None)
        from .models import ApiToken

        token = auth if isinstance(auth, ApiToken) else None
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEntry.objects.create(
        action=action,
        actor=user,
        actor_label=(actor_label or (user.get_username() if user else "hoist"))[:200],
        token=token,
        project=project,
        target_type=target_type[:64],
        target_id=str(target_id or "")[:64],
        target_repr=str(target_repr)[:300],
        changes=redact(changes or {}),
        ip=client_ip(request),
        user_agent=(request.META.get("HTTP_USER_AGENT", "") if request is not None else "")[:300],
        via=via,
    )


def _project_of(target) -> Project | None:
    if isinstance(target, Project):
        return target
    for path in ("project", "environment"):
        value = getattr(target, path, None)
        if isinstance(value, Project):
            return value
        if value is not None and isinstance(getattr(value, "project", None), Project):
            return value.project
    resource = getattr(target, "resource", None)
    if resource is not None:
        return resource.environment.project
    return None
