"""The Create Resource wizard's state machine: its steps, what each reads and checks, what it shows.

The state is raw text as entered, kept in the session (`WizardStore`), so
Back shows exactly what was typed and the same flow works as plain form
posts without JavaScript. Nothing here decides a rule: each step asks
`environments.services.validate_resource_create` and shows the errors of
its own fields.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.exceptions import ValidationError

from environments import fields, selectors, services
from environments.models import Binding, Environment, Kind, Resource, SourceType

from .parsers import check_env_rows, parse_ports, parse_replicas, read_env_rows, read_rollout

WIZARDS_KEPT = 10


def _sealed(state: dict) -> dict:
    """The state as the session keeps it: secret values (the database URL, secret env values)
    encrypted as the models encrypt them, so an abandoned wizard leaves no secret in plain
    text in the session store."""
    sealed = dict(state)
    if sealed.get("database_url"):
        sealed["database_url"] = fields.encrypt(sealed["database_url"])
    sealed["env"] = [
        {**row, "value": fields.encrypt(row["value"])} if row.get("secret") and row.get("value") else dict(row)
        for row in state.get("env", [])
    ]
    return sealed


def _unsealed(stored: dict) -> dict:
    def opened(value):
        if isinstance(value, str) and value.startswith(fields.PREFIX):
            try:
                return fields.decrypt(value)
            except Exception:  # a key rotated away since: the value must be typed again
                return ""
        return value

    state = dict(stored)
    if "database_url" in state:
        state["database_url"] = opened(state["database_url"])
    state["env"] = [{**row, "value": opened(row.get("value"))} if row.get("secret") else dict(row)
                    for row in stored.get("env", [])]
    return state


class WizardStore:
    """Wizard states in the session, keyed by environment and wizard id (several tabs can run one each)."""

    KEY = "resource_wizards"

    def __init__(self, session, environment: Environment):
        self.session, self.prefix = session, f"{environment.pk}:"

    def load(self, wizard_id: str) -> dict:
        stored = self.session.get(self.KEY, {}).get(self.prefix + wizard_id)
        return _unsealed(stored["state"]) if stored else {}

    def save(self, wizard_id: str, state: dict) -> None:
        wizards = dict(self.session.get(self.KEY, {}))
        wizards[self.prefix + wizard_id] = {"state": _sealed(state), "at": time.time()}
        # Abandoned wizards don't pile up in the session: keep the newest few.
        for key in sorted(wizards, key=lambda k: wizards[k]["at"])[:-WIZARDS_KEPT]:
            del wizards[key]
        self.session[self.KEY] = wizards

    def delete(self, wizard_id: str) -> None:
        wizards = dict(self.session.get(self.KEY, {}))
        wizards.pop(self.prefix + wizard_id, None)
        self.session[self.KEY] = wizards


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
CONFIG_KEYS = ("name", "runtime", "ports", "replicas", "ingress_host", "follow", "soak_seconds", "progress_deadline_seconds")
ROLLOUT_FIELDS = ("follow", "soak_seconds", "progress_deadline_seconds", "rollback_on_failure")
# Shown (and read, and checked) only for a resource that tracks an upstream's latest.
TRACK_ONLY = ("follow", "soak_seconds")
# Which step shows a service error about each field.
FIELD_STEP = {
    "source_type": "source",
    "image": "image",
    "source_env": "source_env",
    "promote_from": "source_resource",
    "binding": "binding",
    "pinned_digest": "binding",
    **{key: "config" for key in (*CONFIG_KEYS, *ROLLOUT_FIELDS, "env", "database_url", "schedule", "kind")},
}
STEP_FIELDS = {
    "source": {"source_type"},
    "image": {"image"},
    "source_env": {"source_env"},
    "source_resource": {"promote_from", "kind"},
    "binding": {"binding", "pinned_digest"},
    "config": {*CONFIG_KEYS, *ROLLOUT_FIELDS, "env", "database_url", "schedule"},
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
                if key in TRACK_ONLY and key not in post:
                    continue  # not shown for this binding: keep what was typed before, if anything
                state[key] = post.get(key, "").strip()
            state["rollback_on_failure"] = post.get("rollback_on_failure") in {"on", "1", "true"}
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

    @property
    def tracks_latest(self) -> bool:
        """Whether the track-latest settings (what it follows, the soak time) apply."""
        return self.state.get("source_type") == SourceType.PROMOTE and self.state.get("binding") == Binding.TRACK_LATEST

    def _rollout(self) -> tuple[dict[str, Any], dict[str, list[str]]]:
        values, errors = read_rollout(self.state)
        if not self.tracks_latest:  # the model's defaults, whatever a hidden field held
            for key in TRACK_ONLY:
                values.pop(key, None)
                errors.pop(key, None)
        return values, errors

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
        rollout, errors = self._rollout()
        if errors and not lenient:
            raise ValidationError(errors)
        args.update({k: v for k, v in rollout.items() if k not in errors})
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
            try:
                services.check_source_environment(self.environment, env, "source_env")
            except ValidationError as exc:
                return exc.message_dict
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
            errors.update(self._rollout()[1])
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
            context["choices"] = list(selectors.source_environments(self.environment))
        elif step == "source_resource":
            context["source_env"] = self.source_env
            context["choices"] = list(selectors.source_resources(self.source_env)) if self.source_env else []
        elif step in {"binding", "review"}:
            context["upstream"] = self.upstream
            if self.upstream is not None and step == "binding":
                context["recent"] = selectors.recent_artifacts(self.upstream)
        if step in {"config", "review"}:
            context["rollout_track"] = "shown" if self.tracks_latest else ""
            rows = [dict(row) for row in state.get("env", [])]
            blanks = int(state.get("env_blank", 2) or 2)
            context["env_rows"] = rows + [{"name": "", "value": "", "secret": False}] * blanks
            context["database_url_set"] = bool(state.get("database_url"))
            context["source_env"] = self.source_env
            context["upstream"] = self.upstream
        return context
