"""Validation rules shared by every entry point (services, admin forms, API, wizard).

Each check raises django.core.exceptions.ValidationError with a dict keyed by
the field at fault, so a form puts the message next to the field and the API
returns it under the field's name.
"""

import re

from django.conf import settings
from django.core.exceptions import ValidationError

from . import outbound

from .references import DIGEST_PATTERN, DIGEST_RE, TAG_RE, InvalidReference, parse_reference  # noqa: F401 (re-exported)

DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# RFC 1123 subdomain, as Kubernetes checks it (max 253).
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Kubernetes IANA_SVC_NAME for port names.
PORT_NAME_RE = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")
HOST_RE = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$")
# Env names Hoist sets itself; a user value would be silently overridden.
RESERVED_ENV = {"DATABASE_URL"}


def error(field: str, message: str) -> ValidationError:
    return ValidationError({field: [ValidationError(message, code=field)]})


def check_digest(value: str, field: str = "pinned_digest") -> str:
    if not isinstance(value, str) or not DIGEST_RE.fullmatch(value):
        raise error(
            field,
            "A digest is 'sha256:' followed by exactly 64 lower-case hex characters "
            f"(got {str(value)[:80]!r}).",
        )
    return value


def check_dns_label(value: str, field: str, what: str = "Name") -> str:
    if not isinstance(value, str) or not DNS_LABEL_RE.fullmatch(value):
        raise error(
            field,
            f"{what} must be at most 63 characters of lower-case letters, digits and '-', "
            f"starting and ending with a letter or digit (got {str(value)[:80]!r}).",
        )
    return value


def check_resource_name(value: str, field: str = "name") -> str:
    """A resource's name names its Deployment and Service; a Service needs a DNS-1035
    label, so the name starts with a letter."""
    check_dns_label(value, field)
    if not value[0].isalpha():
        raise error(field, f"Name must start with a letter, as a Kubernetes Service name must (got {value[:80]!r}).")
    return value


def check_kubeconfig(text: str) -> str:
    """Accept only what Hoist can use without touching the worker's files or running programs.

    A kubeconfig may name an `exec` plugin, an auth provider or files (tokenFile,
    client-key paths); honoured on a worker, those would run commands or read
    local secrets on behalf of whoever can edit a cluster. Inline data only.
    """
    import yaml

    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        # The parser's message quotes the offending line, which may hold a token.
        raise error("kubeconfig", "The kubeconfig is not valid YAML.") from None
    if not isinstance(parsed, dict) or not parsed.get("clusters"):
        raise error("kubeconfig", "A kubeconfig needs at least one entry under 'clusters'.")
    forbidden = {"exec", "auth-provider", "tokenFile", "client-certificate", "client-key", "certificate-authority"}
    for section in ("users", "clusters", "contexts"):
        entries = parsed.get(section) or []
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise error("kubeconfig", f"'{section}' must be a list of entries with a name, as kubectl writes it.")
        inner = {"users": "user", "clusters": "cluster", "contexts": "context"}[section]
        for entry in entries:
            body = entry.get(inner) or {}
            if not isinstance(body, dict):
                raise error("kubeconfig", f"{section[:-1]} {str(entry.get('name', '?'))[:60]!r}: '{inner}' must be a mapping.")
            found = sorted(forbidden & set(body))
            if found:
                raise error(
                    "kubeconfig",
                    f"{section[:-1]} {entry.get('name', '?')!r} uses {', '.join(found)}: only inline credentials "
                    "(token, client-certificate-data, client-key-data, certificate-authority-data) are accepted.",
                )
    return text


def check_ports(ports) -> list[dict]:
    """Normalise ports to [{"name", "port", "protocol"}], refusing anything a cluster would."""
    if ports is None:
        return []
    if not isinstance(ports, list):
        raise error("ports", "Ports must be a list.")
    normalised, seen_ports, seen_names = [], set(), set()
    for index, item in enumerate(ports):
        if isinstance(item, int) and not isinstance(item, bool):
            item = {"port": item}
        if not isinstance(item, dict):
            raise error("ports", f"Port #{index + 1} must be a number or an object with 'port'.")
        unknown = set(item) - {"name", "port", "protocol"}
        if unknown:
            raise error("ports", f"Port #{index + 1} has unknown keys: {', '.join(sorted(unknown))}.")
        port = item.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise error("ports", f"Port #{index + 1} must be a whole number from 1 to 65535 (got {port!r}).")
        protocol = item.get("protocol", "TCP") or "TCP"
        if protocol not in {"TCP", "UDP", "SCTP"}:
            raise error("ports", f"Port {port}: protocol must be TCP, UDP or SCTP (got {protocol!r}).")
        name = item.get("name") or f"p{port}"
        if not isinstance(name, str) or not PORT_NAME_RE.fullmatch(name):
            raise error(
                "ports",
                f"Port {port}: name must be at most 15 lower-case letters, digits or '-' with at least one letter "
                f"(got {name!r}).",
            )
        if (port, protocol) in seen_ports:
            raise error("ports", f"Port {port}/{protocol} is listed twice.")
        if name in seen_names:
            raise error("ports", f"Port name {name!r} is used twice.")
        seen_ports.add((port, protocol))
        seen_names.add(name)
        normalised.append({"name": name, "port": port, "protocol": protocol})
    return normalised


def check_env_name(name: str) -> str:
    if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name) or len(name) > 255:
        raise error("env", f"Environment variable name {str(name)[:80]!r} must be letters, digits and '_', not starting with a digit.")
    if name in RESERVED_ENV:
        raise error("env", f"{name} is set from the resource's database URL field; use that field instead.")
    return name


def check_ingress_host(host: str) -> str:
    if host and (len(host) > 253 or not HOST_RE.fullmatch(host)):
        raise error("ingress_host", f"Ingress host must be a lower-case DNS name such as app.example.com (got {host[:80]!r}).")
    return host


def check_runtime(runtime: str) -> str:
    if runtime and (len(runtime) > 253 or not DNS_SUBDOMAIN_RE.fullmatch(runtime)):
        raise error("runtime", f"Runtime must be the name of a RuntimeClass in the cluster, e.g. 'gvisor' (got {runtime[:80]!r}).")
    return runtime


def check_image_reference(image: str, field: str = "image"):
    """Parse an image reference (tag or digest) and check its registry against the
    outbound policy; returns the parsed reference."""
    try:
        parsed = parse_reference(image)
    except InvalidReference as exc:
        raise error(field, f"Not a valid image reference: {exc}") from exc
    try:
        outbound_policy().check_host(parsed.registry)
    except outbound.OutboundRefused as exc:
        raise error(field, f"{str(exc)[0].upper()}{str(exc)[1:]}.") from None
    return parsed


_policy_cache: tuple[tuple, outbound.Policy] | None = None
# A pattern that can't be read matches nothing: the list stays a list (fail closed), and
# `manage.py check` reports it (hoist.E002).
_NOTHING = outbound.Pattern("", -1, None)


def _patterns(values) -> tuple[outbound.Pattern, ...]:
    patterns = []
    for value in values:
        try:
            patterns.append(outbound.Pattern.parse(value))
        except ValueError:
            patterns.append(_NOTHING)
    return tuple(patterns)


def _configured_registries() -> list[str]:
    """Registries operators set up themselves: always reachable whatever the list says."""
    from .models import Cluster

    hosts = [settings.HOIST_CENTRAL_REGISTRY] if settings.HOIST_CENTRAL_REGISTRY else []
    hosts += [r for r in Cluster.objects.exclude(registry="").values_list("registry", flat=True)]
    return [h.split("/", 1)[0] for h in hosts]


def outbound_policy() -> outbound.Policy:
    """The policy of `environments.outbound`, from settings (rebuilt when they change, as in tests)."""
    global _policy_cache
    key = (tuple(settings.HOIST_ALLOWED_REGISTRIES), bool(settings.HOIST_ALLOW_PRIVATE_REGISTRIES),
           settings.HOIST_CENTRAL_REGISTRY)
    if _policy_cache is None or _policy_cache[0] != key:
        # Operator-configured registries are read when needed (a cluster added a second ago counts).
        policy = outbound.Policy(allowed=_patterns(key[0]), private_ok=key[1], configured=_configured_registries)
        _policy_cache = (key, policy)
    return _policy_cache[1]
