"""Where Hoist may connect on a user's behalf: the outbound policy for registries.

A developer names registry hosts (an image reference, a publish's
`repository`), and a registry names further hosts (a bearer-token realm, a
redirect for a blob). Without a policy any of them could point Hoist at the
database on loopback, the web server itself, or a cloud metadata endpoint,
and the different errors would make Hoist a port scanner.

The rule, one for every door and every connection:

- `HOIST_ALLOWED_REGISTRIES` set: only hosts matching one of its patterns, plus
  the registries operators configured themselves (the central registry, the
  clusters' registries). Listed hosts may resolve to private addresses: an
  internal registry usually does.
- No list, DEBUG off: any host, as long as every address it resolves to is a
  public one (not loopback, private, link-local, shared, reserved, multicast,
  or a metadata address). Checked when the reference is given (names that are
  loopback by definition, literal addresses) and again, after DNS, for every
  connection, redirects and token servers included.
- No list, DEBUG on: anything (a laptop's registry on loopback).

Cloud metadata addresses are refused even for a listed host, unless the
address itself is listed: no hostname should ever resolve there.

Plain Python: no Django, no network; `promotions.registry` applies it to
sockets, `environments.rules` to what people type.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass, field
from typing import Callable, Iterable

# AWS/GCP/Azure/OpenStack (169.254.169.254), AWS IPv6 (fd00:ec2::254), Alibaba (100.100.100.200).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
# Names that are loopback or metadata by definition, whatever DNS says.
LOCAL_NAMES = ("localhost", "*.localhost", "localhost.localdomain", "metadata", "metadata.google.internal")

REFUSED = "not allowed by Hoist's outbound policy"


class OutboundRefused(Exception):
    """A connection the policy forbids. The message names the host, never what it resolved to."""


def split_host(host: str) -> tuple[str, int | None]:
    """'name:5000' → ('name', 5000); '[::1]:5000' → ('::1', 5000); 'name' → ('name', None)."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[1:end], host[end + 1 :]
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        return name, int(port) if port.isdigit() else None
    return host, None


def ip_address_of(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host name spells literally (IPv4-mapped IPv6 as IPv4), or None for a name."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return address


def is_public(address) -> bool:
    """An address any registry on the internet could have: none of the special ranges."""
    address = ip_address_of(str(address)) or address
    if address in METADATA_ADDRESSES:
        return False
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class Pattern:
    """One entry of HOIST_ALLOWED_REGISTRIES: a host name (leading `*.` wildcard allowed),
    an address, or a network (CIDR); with `:port`, only that port."""

    host: str
    port: int | None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None

    @classmethod
    def parse(cls, text: str) -> "Pattern":
        text = text.strip().lower()
        if "/" in text:
            name, port = (text.rsplit(":", 1) if text.count(":") == 1 else (text, None))
            try:
                network = ipaddress.ip_network(name, strict=False)
            except ValueError:
                raise ValueError(f"{text!r} is not a network (CIDR) pattern") from None
            return cls(name, int(port) if port else None, network)
        name, port = split_host(text)
        if not name or any(c in name for c in " /@?#"):
            raise ValueError(f"{text!r} is not a host pattern")
        return cls(name, port, None)

    def matches(self, name: str, port: int | None) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.network is not None:
            address = ip_address_of(name)
            return address is not None and address.version == self.network.version and address in self.network
        return fnmatch.fnmatchcase(name, self.host) if self.host.startswith("*.") else name == self.host


def parse_patterns(values: Iterable[str]) -> tuple[Pattern, ...]:
    return tuple(Pattern.parse(v) for v in values if v and v.strip())


@dataclass
class Policy:
    """`allowed`: the operator's patterns (empty: no list). `private_ok`: with no list,
    whether loopback/private addresses are fine (DEBUG). `configured`: hosts operators
    set up themselves (central registry, clusters' registries), always allowed."""

    allowed: tuple[Pattern, ...] = ()
    private_ok: bool = False
    configured: Callable[[], Iterable[str]] = field(default=lambda: ())

    @property
    def open(self) -> bool:
        return not self.allowed and self.private_ok

    def _listed(self, name: str, port: int | None) -> bool:
        if any(p.matches(name, port) for p in self.allowed):
            return True
        for host in self.configured():
            configured_name, configured_port = split_host(host.split("/", 1)[0])
            if configured_name == name and (configured_port is None or configured_port == port):
                return True
        return False

    def allowed_explicitly(self, host: str) -> bool:
        """Listed, or configured by an operator (or no policy at all, in development)."""
        return self.open or self._listed(*split_host(host))

    def check_host(self, host: str) -> None:
        """Before any connection: what the host's name alone tells. Raises OutboundRefused."""
        if self.open:
            return
        name, port = split_host(host)
        if self.allowed:
            if not self._listed(name, port):
                raise OutboundRefused(f"registry {host} is {REFUSED} (it is not in HOIST_ALLOWED_REGISTRIES)")
            return
        address = ip_address_of(name)
        local = (address is not None and not is_public(address)) or any(fnmatch.fnmatchcase(name, n) for n in LOCAL_NAMES)
        # The operator-configured hosts are read (a query) only for a host that would be refused.
        if local and not self._listed(name, port):
            raise OutboundRefused(f"registry {host} is {REFUSED} (a loopback, private or link-local address)")

    def check_connection(self, host: str, port: int, addresses: Iterable) -> None:
        """After DNS, before connecting: every address `host` resolved to must be fine."""
        if self.open:
            return
        name = host.strip("[]").lower()
        self.check_host(f"[{name}]:{port}" if ":" in name else f"{name}:{port}")
        listed = None  # read only when an address needs it (configured hosts cost a query)
        for address in addresses:
            address = ip_address_of(str(address))
            if address is None:
                continue
            if address in METADATA_ADDRESSES and not any(p.matches(str(address), port) for p in self.allowed):
                raise OutboundRefused(f"{name} is {REFUSED} (it resolves to a metadata address)")
            if not is_public(address):
                listed = self._listed(name, port) if listed is None else listed
                if not listed:
                    raise OutboundRefused(f"{name} is {REFUSED} (it resolves to a loopback, private or link-local address)")
