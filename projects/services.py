"""Writes to projects, memberships and API tokens. The API, the pages and the admin call these."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import ApiToken, Membership, Project, Role
from .permissions import require_role, require_staff

TOKEN_PREFIX = "hoist_"
# Characters of the key kept in clear to tell tokens apart ("hoist_" + 6).
VISIBLE_PREFIX_LENGTH = 12


# --- projects and members --------------------------------------------------------------------


def project_create(*, slug: str, name: str, description: str = "", actor=None) -> Project:
    """Create a project (staff only); the creator becomes its maintainer."""
    require_staff(actor, "create projects")
    project = Project(slug=slug, name=name, description=description)
    project.full_clean()
    with transaction.atomic():
        try:
            with transaction.atomic():
                project.save()
        except IntegrityError as exc:
            raise ValidationError({"slug": [f"A project with slug {slug} already exists."]}) from exc
        if actor is not None and getattr(actor, "is_authenticated", False):
            Membership.objects.create(project=project, user=actor, role=Role.MAINTAINER)
    return project


def project_update(*, project: Project, actor=None, **changes) -> Project:
    require_role(actor, project, Role.MAINTAINER, "change the project")
    errors = {f: ["This field can't change."] for f in changes if f not in {"name", "description"}}
    if errors:
        raise ValidationError(errors)
    for field, value in changes.items():
        setattr(project, field, value)
    project.full_clean()
    project.save()
    return project


def membership_set(*, project: Project, username: str, role: str, actor=None) -> Membership:
    """Add a member or change their role (maintainers)."""
    require_role(actor, project, Role.MAINTAINER, "manage members")
    if role not in Role.values:
        raise ValidationError({"role": [f"Role must be one of: {', '.join(Role.values)}."]})
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ValidationError({"username": [f"No active user named {username!r}."]})
    with transaction.atomic():
        membership, created = Membership.objects.select_for_update().get_or_create(
            project=project, user=user, defaults={"role": role}
        )
        if not created and membership.role != role:
            _keep_a_maintainer(project, membership, role)
            membership.role = role
            membership.save(update_fields=["role"])
    return membership


def membership_remove(*, membership: Membership, actor=None) -> None:
    require_role(actor, membership.project, Role.MAINTAINER, "manage members")
    with transaction.atomic():
        _keep_a_maintainer(membership.project, membership, None)
        membership.delete()


def _keep_a_maintainer(project: Project, membership: Membership, new_role: str | None) -> None:
    # A project without a maintainer can only be repaired by staff: refuse to get there.
    if membership.role == Role.MAINTAINER and new_role != Role.MAINTAINER:
        others = project.memberships.select_for_update().filter(role=Role.MAINTAINER).exclude(pk=membership.pk)
        if not others.exists():
            raise ValidationError({"role": ["A project keeps at least one maintainer; add another one first."]})


# --- API tokens -------------------------------------------------------------------------------


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_create(*, user, name: str, expires_at: datetime | None = None, actor=None) -> tuple[ApiToken, str]:
    """Create a token for `user`; returns it and its key, which is never available again.

    Users create their own tokens; staff may create one for anyone (admin).
    """
    if actor is not None and actor != user:
        require_staff(actor, "create tokens for other users")
    errors = {}
    name = (name or "").strip()
    if not name or len(name) > 100:
        errors["name"] = ["Give the token a name of 1 to 100 characters."]
    if expires_at is not None and expires_at <= timezone.now():
        errors["expires_at"] = ["The expiry must be in the future (or empty for none)."]
    if errors:
        raise ValidationError(errors)
    key = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=key[:VISIBLE_PREFIX_LENGTH], key_hash=hash_key(key), expires_at=expires_at
    )
    return token, key


def token_revoke(*, token: ApiToken, actor=None) -> ApiToken:
    """Revoke a token now (its owner or staff). Revoking twice is harmless."""
    if actor is not None and actor != token.user:
        require_staff(actor, "revoke other users' tokens")
    if token.revoked_at is None:
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        token.refresh_from_db()
    return token


def token_for_key(key: str) -> ApiToken | None:
    """The token a key belongs to (any state), or None."""
    if not key or len(key) > 200:
        return None
    return ApiToken.objects.select_related("user").filter(key_hash=hash_key(key)).first()


# A token's last use is written at most this often (a write per request would serialise readers).
LAST_USED_RESOLUTION_S = 60


def token_touch(token: ApiToken) -> None:
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() >= LAST_USED_RESOLUTION_S:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now



# --- users (staff, for automation that sets up projects) --------------------------------------


def user_create(*, username: str, password: str, email: str = "", actor=None):
    from django.contrib.auth.password_validation import validate_password

    require_staff(actor, "create users")
    model = get_user_model()
    user = model(username=username, email=email)
    errors: dict[str, list[str]] = {}
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        errors.setdefault("password", []).extend(exc.messages)
    if errors:
        raise ValidationError(errors)
    user.set_password(password)
    user.save()
    return user
