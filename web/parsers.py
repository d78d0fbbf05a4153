"""Text fields of the resource pages' form posts: ports, replicas, env var rows.

They only turn text into values; every rule is the services' (environments.services).
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError

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


def parse_seconds(text: str, field: str, low: int, high: int, default: int) -> int:
    text = (text or "").strip()
    if not text:
        return default
    if not re.fullmatch(r"\d{1,7}", text) or not low <= int(text) <= high:
        label = field.replace("_", " ").capitalize()
        raise ValidationError({field: [f"{label} must be a whole number of seconds from {low} to {high} (got {text[:20]!r})."]})
    return int(text)


ROLLOUT_LIMITS = {"soak_seconds": (0, 7 * 24 * 3600, 0), "progress_deadline_seconds": (1, 24 * 3600, 600)}


def read_rollout(post) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The rollout fields of a post, as service arguments, and parse errors."""
    values: dict[str, Any] = {
        "follow": post.get("follow", "healthy") or "healthy",
        "rollback_on_failure": post.get("rollback_on_failure") in {True, "on", "1", "true"},
    }
    errors: dict[str, list[str]] = {}
    for field, (low, high, default) in ROLLOUT_LIMITS.items():
        try:
            values[field] = parse_seconds(post.get(field, ""), field, low, high, default)
        except ValidationError as exc:
            errors.update(exc.message_dict)
    return values, errors


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
