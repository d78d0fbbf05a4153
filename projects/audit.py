"""The audit trail: one AuditEntry per write attempt, whichever door it came through.

Every service that writes wraps its work in `attempt()`:

    with audit.attempt("resource.update", actor=actor, target=resource) as entry:
        require_change_environment(actor, ...)      # may refuse
        ...write...
        entry.describe(before=..., after=...)

`attempt()` runs the block in a transaction and writes the entry in it, so a
write and its entry commit together. A refusal (PermissionDenied or
ValidationError) rolls the write back and is recorded afterwards, outside
that transaction, with the message the caller sees: doors therefore never
wrap a service call in a transaction of their own. A service that calls
another (a pin is a resource update) writes one entry, the outer one.

The door (web, admin, api, webhook, command, system), the caller's address,
user agent and API token come from `core.doors`, set by the middleware or
the command. Secret values never reach the table: `redact()` replaces them.
"""

from __future__ import annotations

import contextvars
import logging
from contextlib import contextmanager
from typing import Any, Iterator

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, transaction
from django.db.transaction import TransactionManagementError

from core import doors
from core.errors import refusal_text
from core.http import client_ip

from .models import ApiToken, AuditEntry, Project

log = logging.getLogger(__name__)

# Keys whose values are secrets wherever they appear in a change summary.
SECRET_KEYS = frozenset({"database_url", "token", "kubeconfig", "registry_password", "password", "key"})
REDACTED = "***"
REFUSALS = (PermissionDenied, ValidationError)


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


def record(
    *, action: str, actor=None, target=None, target_type: str = "", target_id: Any = "", target_repr: str = "",
    project: Project | None = None, changes: dict | None = None, actor_label: str = "",
    outcome: str = AuditEntry.Outcome.OK, message: str = "",
) -> AuditEntry:
    """Write one audit entry now. Services use `attempt()`; this is its last step."""
    if target is not None:
        target_type = target_type or target._meta.model_name
        target_id = target_id or target.pk
        target_repr = target_repr or str(target)
        if project is None:
            project = _project_of(target)
    door = doors.current()
    request = door.request
    auth = getattr(request, "auth", None) if request is not None else None
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEntry.objects.create(
        action=action,
        actor=user,
        actor_label=(actor_label or (user.get_username() if user else "hoist"))[:200],
        token=auth if isinstance(auth, ApiToken) else None,
        project=project,
        target_type=target_type[:64],
        target_id=str(target_id or "")[:64],
        target_repr=str(target_repr)[:300],
        changes=redact(changes or {}),
        ip=client_ip(request),
        user_agent=(request.META.get("HTTP_USER_AGENT", "") if request is not None else "")[:300],
        via=door.via,
        outcome=outcome,
        message=message[:2000],
    )


class Attempt:
    """What one write is about; the service fills it in as it learns more."""

    def __init__(self, action: str, actor, target, project, changes, actor_label: str, **target_fields):
        self.action, self.actor, self.target, self.project = action, actor, target, project
        self.changes: dict = dict(changes or {})
        self.actor_label = actor_label
        self.target_fields: dict[str, Any] = target_fields
        self.skipped = False

    def skip(self) -> None:
        """Nothing was written (a validate-only call that passed): no entry. A refusal is still recorded."""
        self.skipped = True

    def describe(self, *, target=None, project=None, changes: dict | None = None, before: Any = None,
                 after: Any = None, **target_fields) -> None:
        """Name the target (once it exists) and summarise the change (before/after, secrets redacted)."""
        if target is not None:
            self.target = target
        if project is not None:
            self.project = project
        if changes:
            self.changes.update(changes)
        if before is not None:
            self.changes["before"] = before
        if after is not None:
            self.changes["after"] = after
        self.target_fields.update(target_fields)

    def write(self, outcome: str, message: str = "") -> None:
        if self.target is not None:
            # The target object names itself; the placeholders given before it existed go.
            self.target_fields = {k: v for k, v in self.target_fields.items() if k not in ("target_type", "target_repr")}
        record(
            action=self.action, actor=self.actor, target=self.target, project=self.project,
            changes=self.changes, actor_label=self.actor_label, outcome=outcome, message=message,
            **self.target_fields,
        )


class _Nested(Attempt):
    """A service called by another service: the outer attempt writes the one entry."""

    def __init__(self, outer: Attempt):
        self.outer = outer

    def skip(self) -> None:
        pass  # the outer service decides whether it wrote anything

    def describe(self, **kwargs) -> None:
        # Fill in only what the outer service did not say itself.
        if kwargs.get("target") is not None and self.outer.target is None:
            self.outer.target = kwargs["target"]
        for key in ("before", "after"):
            if kwargs.get(key) is not None:
                self.outer.changes.setdefault(key, kwargs[key])


_current: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar("hoist_audit_attempt", default=None)


@contextmanager
def attempt(action: str, *, actor=None, target=None, project: Project | None = None, changes: dict | None = None,
            actor_label: str = "", **target_fields) -> Iterator[Attempt]:
    """Run one write in a transaction and audit it, refused or not (see the module docstring)."""
    outer = _current.get()
    if outer is not None:
        yield _Nested(outer)
        return
    entry = Attempt(action, actor, target, project, changes, actor_label, **target_fields)
    reset = _current.set(entry)
    try:
        with transaction.atomic():
            yield entry
            if not entry.skipped:
                entry.write(AuditEntry.Outcome.OK)
    except Exception as exc:
        if _is_refusal(exc):
            _write_after_rollback(entry, AuditEntry.Outcome.REFUSED, refusal_text(exc))
        else:
            _write_after_rollback(entry, AuditEntry.Outcome.FAILED, f"{type(exc).__name__}: {exc}"[:500])
        raise
    finally:
        _current.reset(reset)


def _is_refusal(exc: Exception) -> bool:
    # A rule, a role, or an API precondition (412/428: a 4xx status) said no.
    return isinstance(exc, REFUSALS) or 400 <= getattr(exc, "status_code", 500) < 500


def _write_after_rollback(entry: Attempt, outcome: str, message: str) -> None:
    try:
        entry.write(outcome, message)
    except (DatabaseError, TransactionManagementError):
        # The caller's own transaction is broken (it will roll back): nothing can be written now.
        log.warning("audit entry for a %s %s could not be written", outcome, entry.action, exc_info=True)


def refused(action: str, exc: Exception, *, actor=None, target=None, project: Project | None = None,
            changes: dict | None = None, actor_label: str = "") -> None:
    """Record a write stopped outside a service's attempt: a door's early role check, or a
    step that must not run in a transaction (resolving a tag through a registry)."""
    if _current.get() is not None:
        return  # the enclosing attempt records it
    entry = Attempt(action, actor, target, project, changes, actor_label)
    if _is_refusal(exc):
        _write_after_rollback(entry, AuditEntry.Outcome.REFUSED, refusal_text(exc))
    else:
        _write_after_rollback(entry, AuditEntry.Outcome.FAILED, f"{type(exc).__name__}: {exc}"[:500])


@contextmanager
def guarding(action: str, *, actor=None, target=None, project: Project | None = None) -> Iterator[None]:
    """A door's early check (a 403 before the body is parsed): a refusal raised in the block
    is audited as the service would have audited it, then goes on to the caller."""
    try:
        yield
    except REFUSALS as exc:
        refused(action, exc, actor=actor, target=target, project=project)
        raise


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
