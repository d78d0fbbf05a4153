"""The resource edit page: reading its post, re-showing it, and describing what a save would change.

A save's changes are checked by `environments.services.validate_resource_update`;
`describe_changes` presents that plan (the "what will change" panel) and
never shows a secret value.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from environments import rules, services
from environments.models import Binding, Resource, SourceType
from environments.selectors import latest_artifact

from .parsers import check_env_rows, format_ports, parse_ports, parse_replicas, read_env_rows, read_rollout


def read_edit_post(resource: Resource, post, *, can_pin: bool) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The changes an edit form asks for, as resource_update keyword arguments, and parse errors.

    A secret variable left empty keeps its stored value (value None); a
    secret can't be turned into a plain one without a new value, or its
    stored value would appear on the page.
    """
    changes: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    binding = post["binding"] if can_pin and "binding" in post else resource.binding
    if resource.source_type == SourceType.IMAGE:
        changes["image"] = post.get("image", "").strip()
    elif can_pin and "binding" in post:
        changes["binding"] = post.get("binding", "")
        typed = post.get("pinned_digest", "").strip()
        changes["pinned_digest"] = typed or post.get("digest_pick", "")
        if changes["binding"] != Binding.PIN_DIGEST:
            changes["pinned_digest"] = ""
    for key in ("runtime", "ingress_host"):
        changes[key] = post.get(key, "").strip()
    rollout, rollout_errors = read_rollout(post)
    if not track_applies(resource, binding):
        # What track latest follows and its soak time don't apply: the form hides them, and what is
        # saved for them stays as it is (a later switch to track latest finds it).
        for key in TRACK_ONLY:
            rollout.pop(key, None)
            rollout_errors.pop(key, None)
    changes.update({k: v for k, v in rollout.items() if k not in rollout_errors})
    errors.update(rollout_errors)
    for key, parse in (("ports", parse_ports), ("replicas", parse_replicas)):
        try:
            changes[key] = parse(post.get(key, ""))
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if post.get("database_url_clear"):
        changes["database_url"] = ""
    elif post.get("database_url", "").strip():
        changes["database_url"] = post["database_url"].strip()
    stored = {var.name: var for var in resource.env_vars.all()}
    env = []
    for row in read_env_rows(post):
        before = stored.get(row["name"])
        if before is not None and before.secret and not row["value"]:
            if not row["secret"]:
                errors.setdefault("env", []).append(
                    f"Give {row['name']} a new value to make it non-secret: a saved secret is never shown again."
                )
            row["value"] = None  # keep the stored secret
        env.append(row)
    try:
        check_env_rows(env)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    changes["env"] = env
    return changes, errors


TRACK_ONLY = ("follow", "soak_seconds")


def track_applies(resource: Resource, binding: str) -> bool:
    """Whether the track-latest settings (what it follows, the soak time) apply with this binding."""
    return resource.source_type == SourceType.PROMOTE and binding == Binding.TRACK_LATEST


def rollout_track(resource: Resource, *, can_pin: bool) -> str:
    """How the edit form shows the track-latest settings: "" (not at all: an image source, or a pin
    the user can't change), "shown", or "toggle" (shown while Track latest is chosen)."""
    if resource.source_type != SourceType.PROMOTE:
        return ""
    if can_pin:
        return "toggle"
    return "shown" if resource.binding == Binding.TRACK_LATEST else ""


def form_fields(resource: Resource, *, can_pin: bool, frozen: bool) -> list[str]:
    """The fields the edit form shows, each with its error box `<field>-errors`
    (the live preview refreshes those boxes; mirrors resource_edit_form.html)."""
    fields = ["image"] if resource.source_type == SourceType.IMAGE else (["binding", "pinned_digest"] if can_pin else [])
    if frozen and can_pin:
        fields.append("freeze_override")
    fields += ["runtime", "ports", "replicas", "ingress_host", "database_url"]
    if rollout_track(resource, can_pin=can_pin):
        fields += list(TRACK_ONLY)
    return fields + ["progress_deadline_seconds", "rollback_on_failure", "env"]


def digest_check(values: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, Any]:
    """The digest field's error box as the live preview shows it: what the digest check as you
    type says (environments/htmx/digest_check.html), so the two never contradict each other."""
    value = values.get("pinned_digest", "") if values.get("binding") == Binding.PIN_DIGEST else ""
    messages = list(errors.get("pinned_digest", []))
    if value and not messages:
        try:
            rules.check_digest(value)
        except ValidationError as exc:
            messages = exc.message_dict["pinned_digest"]
    return {"errors": messages, "ok": bool(value) and not messages}


def edit_initial(resource: Resource) -> dict[str, Any]:
    """The edit form's values for a resource as saved (secret values never included)."""
    return {
        "image": resource.image,
        "binding": resource.binding,
        "pinned_digest": resource.pinned_digest,
        "runtime": resource.runtime,
        "ports": format_ports(resource.ports),
        "replicas": str(resource.replicas),
        "ingress_host": resource.ingress_host,
        "follow": resource.follow,
        "soak_seconds": str(resource.soak_seconds),
        "progress_deadline_seconds": str(resource.progress_deadline_seconds),
        "rollback_on_failure": resource.rollback_on_failure,
        "env": [
            {"name": var.name, "value": "" if var.secret else var.value, "secret": var.secret, "stored": var.secret}
            for var in resource.env_vars.all()
        ],
    }


def edit_values_from_post(resource: Resource, post) -> dict[str, Any]:
    """Re-show what was typed (secret values blanked again)."""
    stored = {var.name: var for var in resource.env_vars.all()}
    env = []
    for row in read_env_rows(post):
        before = stored.get(row["name"])
        is_stored_secret = before is not None and before.secret
        env.append({**row, "value": "" if row["secret"] else row["value"], "stored": is_stored_secret})
    return {
        "image": post.get("image", resource.image),
        "freeze_override": post.get("freeze_override", ""),
        "binding": post.get("binding", resource.binding),
        "pinned_digest": post.get("pinned_digest", "") or post.get("digest_pick", ""),
        "runtime": post.get("runtime", ""),
        "ports": post.get("ports", ""),
        "replicas": post.get("replicas", ""),
        "ingress_host": post.get("ingress_host", ""),
        "follow": post.get("follow", resource.follow),
        "soak_seconds": post.get("soak_seconds", ""),
        "progress_deadline_seconds": post.get("progress_deadline_seconds", ""),
        "rollback_on_failure": post.get("rollback_on_failure") in {"on", "1", "true"},
        "env": env,
    }


def describe_changes(resource: Resource, plan: dict[str, Any]) -> dict[str, Any]:
    """What a save would change, for the page to show before saving.

    `plan` is validate_resource_update's answer. Secret values and the
    database URL are never shown, only that they change.
    """
    summary: dict[str, Any] = {"digest": None, "items": []}
    items = summary["items"]
    source = plan["source"]
    if plan["source_changed"]:
        if source["binding"] != resource.binding:
            items.append(("Binding", resource.get_binding_display() or "—", Binding(source["binding"]).label if source["binding"] else "—"))
        if source["pinned_digest"] != resource.pinned_digest and source["binding"] == resource.binding:
            items.append(("Pinned digest", resource.pinned_digest, source["pinned_digest"]))
        if source["image"] != resource.image:
            items.append(("Image", resource.image, source["image"]))
        from_digest = resource.current_digest or resource.pinned_digest
        if source["source_type"] == SourceType.PROMOTE:
            if source["binding"] == Binding.PIN_DIGEST:
                to_digest, note = source["pinned_digest"], "pinned"
            else:
                upstream = source["promote_from"]
                latest = latest_artifact(upstream) if upstream is not None else None
                to_digest = latest.digest if latest else ""
                note = f"the latest of {upstream}" if upstream is not None else ""
            if to_digest != from_digest:
                summary["digest"] = {"from": from_digest, "to": to_digest, "note": note}
    config = plan["config"]
    for field in services.CONFIG_FIELDS:
        if field not in config:
            continue
        old, new = getattr(resource, field), config[field]
        if field == "database_url":
            if old != new:
                items.append(("Database URL", "set" if old else "not set", "removed" if not new else "new value"))
            continue
        if field == "ports":
            old, new = format_ports(old), format_ports(new)
        if old != new:
            label = resource._meta.get_field(field).verbose_name.capitalize()
            items.append((label, str(old) if old != "" else "—", str(new) if new != "" else "—"))
    if plan["env"] is not None:
        stored = {var.name: var for var in resource.env_vars.all()}
        wanted = {row["name"]: row for row in plan["env"]}
        for name, row in wanted.items():
            before = stored.get(name)
            shown = "(secret)" if row["secret"] else row["value"]
            if before is None:
                items.append((f"Env {name}", "—", shown if row["value"] is not None else "(secret)"))
                continue
            if row["value"] is not None and row["value"] != before.value:
                items.append((f"Env {name}", "(secret)" if before.secret else before.value, "new secret value" if row["secret"] else row["value"]))
            elif row["secret"] != before.secret:
                items.append((f"Env {name}", "secret" if before.secret else "plain", "secret" if row["secret"] else "plain"))
        for name, before in stored.items():
            if name not in wanted:
                items.append((f"Env {name}", "(secret)" if before.secret else before.value, "removed"))
    return summary
