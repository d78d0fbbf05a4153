"""Reading the resource pages' form posts, and the Create Resource wizard.

Nothing here decides a rule: a field is parsed from text (ports, replicas,
env rows) and everything else is checked by `environments.services`
(`validate_resource_create` / `validate_resource_update`), so the wizard,
the admin and the API refuse the same input with the same message.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError

from promotions import selectors as promotion_selectors
from promotions.services import latest_artifact

from . import services
from .models import Binding, Environment, Kind, Resource, SourceType

# --- text fields ---------------------------------------------------------------------------------

PORT_TOKEN_RE = re.compile(r"^(?:(?P<name>[^:/\s]+):)?(?P<port>\d{1,5})(?:/(?P<protocol>[A-Za-z]+))?$")


def parse_ports(text: str) -> list[dict]:
    """`8080, metrics:9090, 53/UDP` → [{"port": 8080}, {"name": "metrics", "port": 9090}, …]."""
    ports = []
    for token in re.split(r"[,\s]+", (text or "").strip()):
        if not token:
            continue
        match = PORT_TOKEN_RE.fullmatch(token)
        if not match:
            raise ValidationError(
                {"ports": [f"Couldn't read {token[:40]!r}: write ports as 8080, metrics:9090 or 53/UDP, separated by commas."]}
            )
        item: dict[str, Any] = {"port": int(match["port"])}
        if match["name"]:
            item["name"] = match["name"]
        if match["protocol"]:
            item["protocol"] = match["protocol"].upper()
        ports.append(item)
    return ports


def format_ports(ports: list[dict]) -> str:
    parts = []
    for item in ports or []:
        if isinstance(item, int):
            parts.append(str(item))
            continue
        text = str(item["port"])
        if item.get("name") and item["name"] != f"p{item['port']}":
            text = f"{item['name']}:{text}"
        if item.get("protocol", "TCP") != "TCP":
            text += f"/{item['protocol']}"
        parts.append(text)
    return ", ".join(parts)


def parse_replicas(text: str) -> int:
    text = (text or "").strip()
    if not re.fullmatch(r"\d{1,6}", text):
        raise ValidationError({"replicas": [f"Replicas must be a whole number from 0 to 1000 (got {text[:20]!r})."]})
    return int(text)


ENV_KEY_RE = re.compile(r"^env-(\d{1,3})-name$")


def read_env_rows(post) -> list[dict]:
    """The env var rows of a form post as [{"name", "value", "secret"}], in order, blanks dropped."""
    indices = sorted(int(m.group(1)) for key in post if (m := ENV_KEY_RE.match(key)))
    rows = []
    for index in indices:
        name = post.get(f"env-{index}-name", "").strip()
        value = post.get(f"env-{index}-value", "")
        secret = post.get(f"env-{index}-secret") in {"on", "1", "true"}
        if not name and not value:
            continue
        rows.append({"name": name, "value": value, "secret": secret})
    return rows


def check_env_rows(rows: list[dict]) -> None:
    for number, row in enumerate(rows, start=1):
        if not row["name"]:
            raise ValidationError({"env": [f"Variable #{number} has a value but no name."]})


# --- the wizard -----------------------------------------------------------------------------------

PROMOTE_STEPS = ("source", "source_env", "source_resource", "binding", "config", "review")
IMAGE_STEPS = ("source", "image", "config", "review")
STEP_TITLES = {
    "source": "Source",
    "image": "Image",
    "source_env": "Source environment",
    "source_resource": "Source resource",
    "binding": "Binding",
    "config": "Configuration",
    "review": "Review",
}
CONFIG_KEYS = ("name", "runtime", "ports", "replicas", "ingress_host")
# Which step shows a service error about each field.
FIELD_STEP = {
    "source_type": "source",
    "image": "image",
    "source_env": "source_env",
    "promote_from": "source_resource",
    "binding": "binding",
    "pinned_digest": "binding",
    **{key: "config" for key in (*CONFIG_KEYS, "env", "database_url", "schedule", "kind")},
}
STEP_FIELDS = {
    "source": {"source_type"},
    "image": {"image"},
    "source_env": {"source_env"},
    "source_resource": {"promote_from", "kind"},
    "binding": {"binding", "pinned_digest"},
    "config": {*CONFIG_KEYS, "env", "database_url", "schedule"},
    "review": set(),
}


class ResourceWizard:
    """The Create Resource wizard's state (raw text as entered) and its step checks.

    The state is a plain dict kept in the session, so Back shows exactly what
    was typed and the same flow works as plain form posts without JavaScript.
    Ids of environments and resources are looked up inside the target's
    project only: a forged id is "not one of those listed", never a 500 and
    never a hint about another project.
    """

    def __init__(self, environment: Environment, state: dict):
        self.environment = environment
        self.state = state
        self._cache: dict[str, Any] = {}

    # steps

    @property
    def steps(self) -> tuple[str, ...]:
        return IMAGE_STEPS if self.state.get("source_type") == SourceType.IMAGE else PROMOTE_STEPS

    def previous(self, step: str) -> str:
        index = self.steps.index(step)
        return self.steps[max(index - 1, 0)]

    def next(self, step: str) -> str:
        index = self.steps.index(step)
        return self.steps[min(index + 1, len(self.steps) - 1)]

    # reading a post (no checks: Back keeps whatever was typed)

    def read(self, step: str, post) -> None:
        state = self.state
        if step == "source":
            state["source_type"] = post.get("source_type", "")
        elif step == "image":
            state["image"] = post.get("image", "").strip()
        elif step == "source_env":
            chosen = post.get("source_env", "")
            if chosen != state.get("source_env"):
                state["promote_from"] = ""  # a resource of the old environment no longer applies
            state["source_env"] = chosen
        elif step == "source_resource":
            state["promote_from"] = post.get("promote_from", "")
        elif step == "binding":
            state["binding"] = post.get("binding", "")
            typed = post.get("pinned_digest", "").strip()
            state["pinned_digest"] = typed or post.get("digest_pick", "")
        elif step == "config":
            for key in CONFIG_KEYS:
                state[key] = post.get(key, "").strip()
            database_url = post.get("database_url", "")
            if database_url or post.get("database_url_clear"):
                state["database_url"] = database_url.strip()
            previous = {row["name"]: row for row in state.get("env", [])}
            rows = []
            for row in read_env_rows(post):
                before = previous.get(row["name"])
                if row["secret"] and not row["value"] and before and before.get("secret"):
                    row["value"] = before["value"]  # a masked secret left empty keeps its value
                rows.append(row)
            state["env"] = rows
        self._cache.clear()

    # lookups

    @property
    def source_env(self) -> Environment | None:
        if "source_env" not in self._cache:
            pk = str(self.state.get("source_env") or "")
            self._cache["source_env"] = (
                Environment.objects.filter(project_id=self.environment.project_id, pk=int(pk)).first()
                if pk.isdigit() else None
            )
        return self._cache["source_env"]

    @property
    def upstream(self) -> Resource | None:
        if "upstream" not in self._cache:
            pk = str(self.state.get("promote_from") or "")
            env = self.source_env
            self._cache["upstream"] = (
                Resource.objects.filter(environment=env, pk=int(pk)).select_related("environment__project").first()
                if pk.isdigit() and env is not None else None
            )
        return self._cache["upstream"]

    # arguments for the services

    def arguments(self, *, lenient: bool = False) -> dict[str, Any]:
        """Keyword arguments for validate_resource_create/resource_create.

        Text fields are parsed here; `lenient` puts a harmless value where a
        text field doesn't parse (used while checking one step at a time).
        """
        state = self.state
        args: dict[str, Any] = {
            "environment": self.environment,
            "name": state.get("name", ""),
            "kind": Kind.DEPLOYMENT,
            "source_type": state.get("source_type", ""),
            "image": state.get("image", ""),
            "promote_from": self.upstream,
            "binding": state.get("binding", ""),
            "pinned_digest": state.get("pinned_digest", ""),
            "runtime": state.get("runtime", ""),
            "ingress_host": state.get("ingress_host", ""),
            "database_url": state.get("database_url", ""),
            "env": [dict(row) for row in state.get("env", []) if row["name"]],
        }
        try:
            args["ports"] = parse_ports(state.get("ports", ""))
        except ValidationError:
            if not lenient:
                raise
            args["ports"] = []
        try:
            args["replicas"] = parse_replicas(state.get("replicas", "1") or "1")
        except ValidationError:
            if not lenient:
                raise
            args["replicas"] = 1
        return args

    def _service_errors(self, fields: set[str]) -> dict[str, list[str]]:
        try:
            services.validate_resource_create(**self.arguments(lenient=True))
        except ValidationError as exc:
            return {field: messages for field, messages in exc.message_dict.items() if field in fields}
        return {}

    # checks, one step at a time

    def validate(self, step: str) -> dict[str, list[str]]:
        state = self.state
        if step == "source":
            if state.get("source_type") not in SourceType.values:
                return {"source_type": ["Choose Image or Promote from environment."]}
            return {}
        if step == "image":
            return self._service_errors({"image"})
        if step == "source_env":
            if not state.get("source_env"):
                return {"source_env": ["Pick the environment to promote from."]}
            env = self.source_env
            if env is None:
                return {"source_env": ["Pick one of the environments listed."]}
            if env.pk == self.environment.pk:
                return {"source_env": [
                    f"You can't promote into the environment you promote from ({env.slug}); pick another source environment."
                ]}
            if not env.resources.filter(kind=Kind.DEPLOYMENT).exists():
                return {"source_env": [f"{env.name} has no deployment to promote from yet."]}
            return {}
        if step == "source_resource":
            if not state.get("promote_from"):
                return {"promote_from": ["Pick the resource to promote from."]}
            if self.upstream is None:
                return {"promote_from": [f"Pick one of the resources listed for {self.source_env or 'that environment'}."]}
            return self._service_errors({"promote_from", "kind"})
        if step == "binding":
            return self._service_errors({"binding", "pinned_digest"})
        if step == "config":
            errors: dict[str, list[str]] = {}
            for parse, key in ((parse_ports, "ports"), (parse_replicas, "replicas")):
                try:
                    parse(state.get(key, "") if key == "ports" else (state.get(key) or ""))
                except ValidationError as exc:
                    errors.update(exc.message_dict)
            try:
                check_env_rows(state.get("env", []))
            except ValidationError as exc:
                errors.update(exc.message_dict)
            for field, messages in self._service_errors(STEP_FIELDS["config"]).items():
                errors.setdefault(field, messages)
            return errors
        return {}

    def first_invalid(self, *, before: str | None = None) -> tuple[str, dict] | None:
        """The first step (before `before`, or any) whose input doesn't pass, with its errors."""
        for step in self.steps:
            if step == before or step == "review":
                return None
            errors = self.validate(step)
            if errors:
                return step, errors
        return None

    def step_of(self, errors: dict) -> str:
        steps = [FIELD_STEP.get(field, "review") for field in errors]
        steps = [s for s in steps if s in self.steps] or ["review"]
        return min(steps, key=self.steps.index)

    # what each step shows

    def context(self, step: str) -> dict[str, Any]:
        state = self.state
        context: dict[str, Any] = {"state": state, "target": self.environment}
        if step == "source_env":
            context["choices"] = list(promotion_selectors.source_environments(self.environment))
        elif step == "source_resource":
            context["source_env"] = self.source_env
            context["choices"] = list(promotion_selectors.source_resources(self.source_env)) if self.source_env else []
        elif step in {"binding", "review"}:
            context["upstream"] = self.upstream
            if self.upstream is not None and step == "binding":
                context["recent"] = promotion_selectors.recent_artifacts(self.upstream)
        if step in {"config", "review"}:
            rows = [dict(row) for row in state.get("env", [])]
            blanks = int(state.get("env_blank", 2) or 2)
            context["env_rows"] = rows + [{"name": "", "value": "", "secret": False}] * blanks
            context["database_url_set"] = bool(state.get("database_url"))
            context["source_env"] = self.source_env
            context["upstream"] = self.upstream
        return context


# --- editing --------------------------------------------------------------------------------------


def read_edit_post(resource: Resource, post, *, can_pin: bool) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The changes an edit form asks for, as resource_update keyword arguments, and parse errors.

    A secret variable left empty keeps its stored value (value None); a
    secret can't be turned into a plain one without a new value, or its
    stored value would appear on the page.
    """
    changes: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
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
        "binding": post.get("binding", resource.binding),
        "pinned_digest": post.get("pinned_digest", "") or post.get("digest_pick", ""),
        "runtime": post.get("runtime", ""),
        "ports": post.get("ports", ""),
        "replicas": post.get("replicas", ""),
        "ingress_host": post.get("ingress_host", ""),
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
