"""Image references and digests: parsing them the way Docker does, and the one digest pattern.

Desired state (rules, services, the API) and the engine (registry client,
mirroring, webhook) all read references through this module, so a value
accepted at one door is accepted at every other. Plain Python: no Django,
no network.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

# \Z, not $: "$" also matches before a trailing newline (Python and SQLite);
# PostgreSQL's regex engine understands \Z too, so the database constraint agrees.
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}\Z"
DIGEST_RE = re.compile(DIGEST_PATTERN)
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_HOSTNAME_RE = re.compile(
    r"^(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(?:\.(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*\Z"
)

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
# distribution refuses manifests over 4 MiB; refusing to read more protects our memory.


class InvalidReference(ValueError):
    """A malformed image reference or digest; the message says what is wrong."""

    retryable = False

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def is_digest(value: object) -> bool:
    """True for ``sha256:`` + 64 lower-case hex, the only digest form Hoist accepts."""
    return isinstance(value, str) and bool(DIGEST_RE.match(value))


def check_digest(value: object, where: str) -> str:
    if is_digest(value):
        return value  # type: ignore[return-value]
    if not isinstance(value, str) or not value:
        raise InvalidReference(f"{where}: digest is missing")
    algo, sep, hexpart = value.partition(":")
    if not sep:
        raise InvalidReference(f"{where}: digest '{value}' must look like 'sha256:<64 hex characters>'")
    if algo != "sha256":
        raise InvalidReference(f"{where}: digest '{value}' uses algorithm '{algo}'; only sha256 is supported")
    if re.fullmatch(r"[0-9a-fA-F]{64}", hexpart):
        raise InvalidReference(f"{where}: digest '{value}' must be lower-case hex")
    raise InvalidReference(
        f"{where}: digest '{value}' must be 'sha256:' followed by 64 hex characters (got {len(hexpart)} characters)"
    )


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference: ``registry/repository[:tag][@digest]``."""

    registry: str  # host[:port]; Docker Hub is "docker.io"
    repository: str  # path inside the registry, e.g. "library/nginx"
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``: what a destination of ``copy`` is."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest if known, else the tag (default "latest")."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> "ImageRef":
        """The same repository pinned to ``digest`` (the tag is dropped: a digest is the identity)."""
        return replace(self, tag=None, digest=check_digest(digest, f"image '{self.name}'"))

    def pinned(self) -> str:
        """``registry/path@sha256:…``: the only form Hoist writes to a cluster (guarantee 1)."""
        if not self.digest:
            raise InvalidReference(f"image reference '{self}' has no digest; resolve it first")
        return f"{self.name}@{self.digest}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def _looks_like_host(component: str) -> bool:
    # Docker's rule: the first component is a registry host only if it could not
    # be a repository name: it has a '.' or a ':' port, or is "localhost".
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def _check_host(host: str, ref: str) -> str:
    hostpart, port = host, None
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise InvalidReference(f"invalid image reference '{ref}': registry host '{host}' has an unclosed '['")
        inner, rest = host[1:end], host[end + 1 :]
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise InvalidReference(f"invalid image reference '{ref}': '{inner}' is not an IPv6 address") from None
        if rest:
            if not rest.startswith(":"):
                raise InvalidReference(f"invalid image reference '{ref}': unexpected '{rest}' after registry host")
            port = rest[1:]
    else:
        hostpart, sep, port_s = host.partition(":")
        port = port_s if sep else None
        if not _HOSTNAME_RE.match(hostpart):
            raise InvalidReference(f"invalid image reference '{ref}': '{hostpart}' is not a valid registry host name")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise InvalidReference(f"invalid image reference '{ref}': registry port '{port}' must be a number 1-65535")
    return host.lower()


def parse_reference(ref: str) -> ImageRef:
    """Parse ``[host[:port]/]path[:tag][@sha256:…]`` the way Docker does.

    Short names map to Docker Hub (``nginx`` → ``docker.io/library/nginx``). Raises
    ``InvalidReference`` (a ``RegistryError`` with retryable=False and a ``ValueError``)
    saying what is wrong.
    """
    if isinstance(ref, ImageRef):
        return ref
    if not isinstance(ref, str):
        raise InvalidReference(f"image reference must be a string, not {type(ref).__name__}")
    if not ref:
        raise InvalidReference("image reference is empty")
    if any(c.isspace() for c in ref):
        raise InvalidReference(f"invalid image reference '{ref}': it contains whitespace")
    if "://" in ref:
        raise InvalidReference(
            f"invalid image reference '{ref}': leave out the URL scheme (write 'host/path:tag', not 'https://host/…')"
        )
    rest, digest = ref, None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if "@" in digest:
            raise InvalidReference(f"invalid image reference '{ref}': more than one '@'")
        check_digest(digest, f"invalid image reference '{ref}'")
    tag = None
    colon, slash = rest.rfind(":"), rest.rfind("/")
    if colon > slash:  # a ':' after the last '/' starts a tag; before it, it is a host port
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not tag:
            raise InvalidReference(f"invalid image reference '{ref}': empty tag after ':'")
        if not TAG_RE.match(tag):
            raise InvalidReference(
                f"invalid image reference '{ref}': tag '{tag}' is invalid "
                "(letters, digits, '_', '.', '-'; must not start with '.' or '-'; at most 128 characters)"
            )
    if not rest:
        raise InvalidReference(f"invalid image reference '{ref}': repository name is missing")
    parts = rest.split("/")
    if len(parts) > 1 and _looks_like_host(parts[0]):
        host, path = _check_host(parts[0], ref), parts[1:]
    elif len(parts) == 1 and _looks_like_host(parts[0]) and ("." in parts[0] or parts[0].startswith("[")):
        raise InvalidReference(f"invalid image reference '{ref}': repository path is missing after registry '{parts[0]}'")
    else:
        host, path = DOCKER_HUB, parts
    if host in DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
        if len(path) == 1:
            path = ["library", *path]
    for component in path:
        if not component:
            raise InvalidReference(f"invalid image reference '{ref}': empty path component (doubled or trailing '/')")
        if not _PATH_COMPONENT_RE.match(component):
            hint = " (repository names must be lower-case)" if component.lower() != component else ""
            raise InvalidReference(
                f"invalid image reference '{ref}': repository path component '{component}' is invalid{hint}; "
                "use lower-case letters and digits separated by '.', '_', '__' or '-'"
            )
    repository = "/".join(path)
    if len(host) + 1 + len(repository) > 255:
        raise InvalidReference(f"invalid image reference '{ref}': repository name is longer than 255 characters")
    return ImageRef(host, repository, tag, digest)
