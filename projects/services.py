"""Writes to projects, memberships, users and API tokens. The API, the pages and the admin call these.

Each takes the actor, checks it (`permissions`), writes and records one audit
entry (`audit.attempt`), a refusal included.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import audit
from .models import ApiToken, Membership, Project, Role
from .permissions import require_role, require_staff

TOKEN_PREFIX = "hoist_"
# Characters of the key kept in clear to tell tokens apart ("hoist_" + 6).
VISIBLE_PREFIX_LENGTH = 12


# --- projects and members --------------------------------------------------------------------


def project_create(*, slug: str, name: str, description: str = "", actor=None, validate_only: bool = False) -> Project:
    """Create a project (staff only); the creator becomes its maintainer."""
    with audit.attempt("project.create", actor=actor) as entry:
        require_staff(actor, "create projects")
        project = Project(slug=slug, name=name, description=description)
        project.full_clean()
        if validate_only:
            entry.skip()
            return project
        try:
            with transaction.atomic():
                project.save()
        except IntegrityError as exc:
            raise ValidationError({"slug": [f"A project with slug {slug} already exists."]}) from exc
        if actor is not None and getattr(actor, "is_authenticated", False):
            Membership.objects.create(project=project, user=actor, role=Role.MAINTAINER)
        entry.describe(target=project, after={"slug": slug, "name": name, "description": description})
    return project


def project_update(*, project: Project, actor=None, validate_only: bool = False, **changes) -> Project:
    with audit.attempt("project.update", actor=actor, target=project) as entry:
        require_role(actor, project, Role.MAINTAINER, "change the project")
        errors = {f: ["This field can't change."] for f in changes if f not in {"name", "description"}}
        if errors:
            raise ValidationError(errors)
        before = {"name": project.name, "description": project.description}
        for field, value in changes.items():
            setattr(project, field, value)
        project.full_clean()
        if validate_only:
            entry.skip()
            return project
        project.save()
        entry.describe(before=before, after={"name": project.name, "description": project.description})
    return project


def project_delete(*, project: Project, actor=None) -> None:
    """Delete a project (staff), refused while it has environments: deleting those first
    (environment_delete) takes what runs in them out of the clusters."""
    with audit.attempt("project.delete", actor=actor, target=project) as entry:
        require_staff(actor, "delete projects")
        names = sorted(project.environments.values_list("slug", flat=True))
        if names:
            raise ValidationError(
                {"project": [f"Project {project.slug} still has environments ({', '.join(names)}); delete them first."]}
            )
        entry.describe(before={"slug": project.slug, "name": project.name})
        project.delete()


def membership_set(*, project: Project, username: str, role: str, actor=None, validate_only: bool = False) -> Membership:
    """Add a member or change their role (maintainers)."""
    with audit.attempt("membership.set", actor=actor, project=project,
                       target_type="membership", target_repr=f"{project.slug}: {username}") as entry:
        require_role(actor, project, Role.MAINTAINER, "manage members")
        if role not in Role.values:
            raise ValidationError({"role": [f"Role must be one of: {', '.join(Role.values)}."]})
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise ValidationError({"username": [f"No active user named {username!r}."]})
        if validate_only:
            entry.skip()
            stored = Membership.objects.filter(project=project, user=user).first()
            if stored is not None and stored.role != role:
                _keep_a_maintainer(project, stored, role)
            return stored or Membership(project=project, user=user, role=role)
        membership, created = Membership.objects.select_for_update().get_or_create(
            project=project, user=user, defaults={"role": role}
        )
        before = None if created else {"username": username, "role": membership.role}
        if not created and membership.role != role:
            _keep_a_maintainer(project, membership, role)
            membership.role = role
            membership.save(update_fields=["role"])
        entry.describe(target=membership, before=before, after={"username": username, "role": role})
    return membership


def membership_remove(*, membership: Membership, actor=None) -> None:
    with audit.attempt("membership.remove", actor=actor, target=membership, project=membership.project) as entry:
        require_role(actor, membership.project, Role.MAINTAINER, "manage members")
        _keep_a_maintainer(membership.project, membership, None)
        entry.describe(before={"username": membership.user.username, "role": membership.role})
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
    with audit.attempt("token.create", actor=actor, target_type="apitoken", target_repr=f"{user}: {name!s:.80}") as entry:
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
        entry.describe(target=token, changes={"name": token.name, "prefix": token.prefix, "user": user.get_username(),
                                              "expires_at": str(expires_at)})
    return token, key


def token_revoke(*, token: ApiToken, actor=None) -> ApiToken:
    """Revoke a token now (its owner or staff). Revoking twice is harmless."""
    with audit.attempt("token.revoke", actor=actor, target=token, changes={"prefix": token.prefix}):
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

    with audit.attempt("user.create", actor=actor, target_type="user", target_repr=str(username)[:150]) as entry:
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
        entry.describe(target=user, after={"username": username, "email": email})
    return user
