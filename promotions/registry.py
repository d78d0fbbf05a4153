"""Registry client: the one module in Hoist that talks to container registries.

It speaks the OCI distribution API (docker/distribution, Harbor, GHCR, Docker Hub …)
over httpx and nothing else (blob bodies on a transport of its own, `_BlobTransport`).
Plain Python, no Django: callers pass settings in.

What the rest of Hoist relies on (DESIGN.md guarantees 1 and 4):

* ``resolve`` turns a tag into the digest the registry holds for it, so nothing
  downstream ever deals in tags.
* ``copy`` mirrors an image *by digest*: manifest bytes are copied verbatim (the
  digest is over the bytes, so JSON is never re-serialised), every blob is present
  at the destination before any manifest that references it is pushed, children
  before their index, and every digest is verified on the way (a blob's before its
  last byte is sent). If anything fails mid-way no manifest has been pushed, so a
  half-copied image can never be referenced; calling ``copy`` again resumes
  (present blobs are skipped). A blob is one POST and one monolithic PUT streamed
  from the source's GET, in bounded memory.
* Every failure is a ``RegistryError`` whose ``retryable`` says whether trying again
  later can help (network, 5xx, 429) or not (bad reference, auth, not found, digest
  mismatch). Its message is written for an operator reading a Promotion record.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import hashlib
import http.client
import ipaddress
import json
import logging
import os
import re
import select
import socket
import ssl
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Union
from urllib.parse import quote

import httpcore
import httpx

from environments import references
from environments.outbound import OutboundRefused, Policy, ip_address_of, split_host
from environments.references import DOCKER_HUB, DOCKER_HUB_ALIASES, DOCKER_HUB_API, ImageRef, is_digest

RefLike = Union[str, ImageRef]

__all__ = [
    "ImageRef",
    "RegistryError",
    "InvalidReference",
    "CopyResult",
    "Manifest",
    "RegistryClient",
    "parse_reference",
    "is_digest",
    "MANIFEST_MEDIA_TYPES",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_MEDIA_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
# Without the full list a registry may down-convert (e.g. to schema 1) or pick one
# platform of an index, and the bytes — hence the digest — would not be the ones pushed.
MANIFEST_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)

# Layers that by definition are not stored in the registry (they carry "urls").
_FOREIGN_LAYER_TYPES = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_INDEX_DEPTH = 8
# Digests are over the stored bytes: ask that nobody re-encodes them in transit (layers
# are compressed already, so transfer compression would only cost CPU on both ends).
_IDENTITY = {"Accept-Encoding": "identity"}
# Upload sessions can expire or be purged by the registry: starting over fixes that.
_RETRYABLE_UPLOAD_CODES = frozenset({"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"})

# --------------------------------------------------------------------------- errors


class RegistryError(Exception):
    """The one error this module raises.

    ``retryable``: True when the same call may succeed later (registry down, timeout,
    5xx, 429); False when it cannot without someone changing something.
    ``status``: the HTTP status that caused it, when there was one.
    ``code``: the registry's error code (``MANIFEST_UNKNOWN``, ``DENIED`` …) when given.
    """

    def __init__(self, message: str, retryable: bool = False, status: int | None = None, *, code: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status
        self.code = code
        # Seconds the registry asked us to wait (a 429's or 503's Retry-After), when it said.
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, retryable={self.retryable}, status={self.status})"

    @property
    def public(self) -> str:
        """What may be told to someone who is not staff. Whether a host refused the
        connection, timed out, answered HTTP, or answered like a registry would let
        anyone who can type a reference map the network; so those all read alike.
        A policy refusal happens before any connection and reveals nothing."""
        if self.code == OUTBOUND_REFUSED:
            return self.message
        return "the registry could not be reached, refused access, or has no such image"


OUTBOUND_REFUSED = "OUTBOUND_REFUSED"


class Deferred(RegistryError):
    """The registry was not called at all (its breaker is open, it is busy with other calls,
    or its rate limit has no room soon): retry at `retry_at` (a datetime), not sooner, and
    don't count it as another failure of the host."""

    def __init__(self, message: str, retry_at):
        super().__init__(message, retryable=True)
        self.retry_at = retry_at


class InvalidReference(RegistryError, references.InvalidReference):
    """A malformed image reference or digest: a RegistryError that will not go away by
    retrying, and also the desired-state side's InvalidReference (a ValueError)."""

    def __init__(self, message: str):
        RegistryError.__init__(self, message, retryable=False, status=None)


def parse_reference(ref: RefLike) -> ImageRef:
    """`environments.references.parse_reference`, failing with this module's error type."""
    try:
        return references.parse_reference(ref)
    except references.InvalidReference as exc:
        raise InvalidReference(exc.message) from None


def _check_digest(value: object, where: str) -> str:
    try:
        return references.check_digest(value, where)
    except references.InvalidReference as exc:
        raise InvalidReference(exc.message) from None


# --------------------------------------------------------------------------- references


def _with_digest(ref: ImageRef, digest: str) -> ImageRef:
    return ref.with_digest(_check_digest(digest, f"image '{ref.name}'"))


def _as_ref(ref: RefLike) -> ImageRef:
    return ref if isinstance(ref, ImageRef) else parse_reference(ref)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CopyResult:
    digest: str
    blobs_copied: int = 0
    blobs_skipped: int = 0  # already at the destination (or foreign layers, never stored)
    blobs_mounted: int = 0  # cross-repository mounts inside one registry: no bytes moved
    bytes_copied: int = 0
    manifests_pushed: int = 0

    @property
    def already_present(self) -> bool:
        return self.manifests_pushed == 0


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    content: bytes  # the exact bytes the digest is computed over

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES


# --------------------------------------------------------------------------- auth helpers

_CHALLENGE_PARAM_RE = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))')


@dataclass(frozen=True)
class _Challenge:
    scheme: str  # "basic" or "bearer"
    params: Mapping[str, str]


def _parse_challenge(header: str) -> _Challenge | None:
    """First Basic/Bearer challenge of a WWW-Authenticate header."""
    if not header:
        return None
    m = re.match(r"\s*([A-Za-z]+)\s*(.*)$", header, re.S)
    if not m:
        return None
    scheme = m.group(1).lower()
    if scheme not in ("basic", "bearer"):
        return None
    params = {k.lower(): (q if q is not None else t).replace('\\"', '"') for k, q, t in _CHALLENGE_PARAM_RE.findall(m.group(2))}
    return _Challenge(scheme, params)


def _merge_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Union the actions of scopes on the same resource: a:pull + a:push → a:pull,push."""
    merged: dict[str, list[str]] = {}
    for scope in scopes:
        for one in scope.split(" "):
            if not one:
                continue
            resource, _, actions = one.rpartition(":")
            if not resource:
                merged.setdefault(one, [])
                continue
            acts = merged.setdefault(resource, [])
            for a in actions.split(","):
                if a and a not in acts:
                    acts.append(a)
    return tuple(sorted(f"{r}:{','.join(sorted(a))}" if a else r for r, a in merged.items()))


def _pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def _push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


def _registry_errors(resp: httpx.Response) -> tuple[str | None, str]:
    """(first error code, human text) from a distribution error body, if any."""
    try:
        if not resp.is_stream_consumed:
            resp.read()
        doc = json.loads(resp.content) if resp.content else None
    except Exception:
        return None, ""
    if not isinstance(doc, dict):
        return None, ""
    errors = doc.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        msgs = "; ".join(str(e.get("message") or e.get("code")) for e in errors if isinstance(e, dict))
        return (str(code) if code else None), msgs
    for key in ("details", "message", "error"):
        if isinstance(doc.get(key), str):
            return None, doc[key]
    return None, ""


def _with_query_param(url: httpx.URL, key: str, value: str) -> httpx.URL:
    """Add one query parameter, keeping the existing query byte for byte.

    Upload locations carry an opaque signed ``_state`` parameter; decoding and
    re-encoding it (as a params dict would) can change it and break the upload.
    """
    extra = f"{quote(key, safe='')}={quote(value, safe='')}".encode()
    query = url.query + b"&" + extra if url.query else extra
    return url.copy_with(query=query)


def _close(resp: httpx.Response | None) -> None:
    if resp is not None:
        try:
            resp.close()
        except Exception:
            pass


# --------------------------------------------------------------------------- client

Credentials = Union[Mapping[str, tuple[str, str]], Callable[[str], "tuple[str, str] | None"], None]


class RegistryClient:
    """A pooled HTTP client for one or more registries.

    ``credentials``: ``{host: (username, password)}`` or ``callable(host) → (username,
    password) | None``; used for Basic auth and for the token server in the Bearer flow.
    ``insecure_hosts``: hosts spoken to over plain http. Loopback hosts (127.0.0.0/8,
    ::1, localhost) are plain http by default, as Docker treats them; ``scheme_for``
    (``callable(host) → "http" | "https"``) overrides everything.
    ``max_workers``: blobs copied in parallel within one ``copy`` call.
    ``chunk_size``: read size when streaming blobs; memory per transfer stays about
    two chunks whatever the blob size.
    ``timeout``/``connect_timeout``: per network step (connect, each read); ``deadline()``
    bounds a whole call on top.
    ``policy``: the outbound policy (``environments.outbound``), checked on the host
    before a request and, after DNS, on every connection (token servers and
    redirects included); None allows everything (tests of the client alone).
    ``throttle``: ``callable(host, seconds_left | None)`` called before every request
    to a registry (its token server included); it may wait for the host's rate limit
    or raise a retryable RegistryError. ``on_retry_after``: ``callable(host, seconds)``
    told when a host answers 429 (or 503) with ``Retry-After``.

    Thread-safe: one client can serve many concurrent calls (tasks share it).
    """

    def __init__(
        self,
        credentials: Credentials = None,
        *,
        insecure_hosts: Iterable[str] = (),
        scheme_for: Callable[[str], str] | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        policy: Policy | None = None,
        verify: bool | str = True,
        max_workers: int = 4,
        chunk_size: int = 1024 * 1024,
        user_agent: str = "hoist-registry-client/1",
        http_client: httpx.Client | None = None,
        on_response: Callable[[str, str], None] | None = None,
        throttle: Callable[[str, float | None], None] | None = None,
        on_retry_after: Callable[[str, float], None] | None = None,
    ):
        self._credentials = credentials
        self._insecure = {h.lower() for h in insecure_hosts}
        self._scheme_for = scheme_for
        self.max_workers = max(1, int(max_workers))
        self.chunk_size = max(64 * 1024, int(chunk_size))
        self._policy = policy
        self._own_http = http_client is None
        limits = httpx.Limits(max_connections=max(20, 4 * self.max_workers), max_keepalive_connections=max(10, 2 * self.max_workers))
        common = dict(timeout=httpx.Timeout(timeout, connect=connect_timeout),
                      follow_redirects=False,  # redirects are followed only for blob downloads (CDNs, S3)
                      headers={"User-Agent": user_agent})
        if http_client is not None:
            self._http = self._bulk = http_client  # tests script every request through one client
        else:
            context = _ssl_context(verify)
            self._http = httpx.Client(
                verify=context, limits=limits, **common,
                transport=_policed_transport(policy, verify=context, limits=limits) if policy is not None else None,
            )
            # Blob bodies (most of a mirror's bytes) take their own transport: see _BlobTransport.
            self._bulk = httpx.Client(
                verify=context, **common,
                transport=_BlobTransport(policy, context, chunk_size=self.chunk_size, max_idle=2 * self.max_workers),
            )
        self._deadline = threading.local()
        self._lock = threading.Lock()
        self._challenges: dict[str, _Challenge] = {}  # host → how it asked us to authenticate
        self._tokens: dict[tuple[str, tuple[str, ...]], tuple[str, float]] = {}  # (host, scopes) → (token, expiry)
        self._request_count = 0
        # Told (host, status) of every request, "error" when no answer came: for metrics.
        self._on_response = on_response
        self._throttle = throttle
        self._on_retry_after = on_retry_after

    def _observed(self, host: str, status: str) -> None:
        if self._on_response is not None:
            try:
                self._on_response(host, status)
            except Exception:  # metrics must never break a copy
                pass

    # -- lifecycle
    def close(self) -> None:
        if self._own_http:
            self._http.close()
            self._bulk.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def deadline(self, seconds: float):
        """Bound every request this thread makes inside the block to `seconds` in all:
        a host that trickles bytes can't hold a call longer than that."""
        return _Deadline(self._deadline, time.monotonic() + seconds)

    def _remaining(self, what: str, host: str) -> float | None:
        ends = getattr(self._deadline, "at", None)
        if ends is None:
            return None
        left = ends - time.monotonic()
        if left <= 0:
            raise RegistryError(f"registry {host} took too long while {what} (the call's deadline passed)", retryable=True)
        return left

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far (registries and token servers): for benchmarks and tests."""
        return self._request_count

    # -- addressing
    def _base(self, host: str) -> str:
        if self._scheme_for is not None:
            scheme = self._scheme_for(host)
        else:
            scheme = "http" if host in self._insecure or _is_loopback(host) else "https"
        return f"{scheme}://{_api_host(host)}"

    def _url(self, ref: ImageRef, kind: str, reference: str) -> str:
        return f"{self._base(ref.registry)}/v2/{ref.repository}/{kind}/{reference}"

    def _creds(self, host: str) -> tuple[str, str] | None:
        c = self._credentials
        if c is None:
            return None
        if callable(c):
            return c(host)
        found = c.get(host)
        if found is None and host == DOCKER_HUB:
            for alias in DOCKER_HUB_ALIASES:
                found = found or c.get(alias)
        return tuple(found) if found else None  # type: ignore[return-value]

    # -- auth
    def _auth_header(self, host: str, scopes: tuple[str, ...], *, fresh: bool = False, extra_scope: str | None = None) -> str | None:
        """Authorization value for ``host`` given what it asked for last time.

        Knowing the host's challenge lets us authenticate up front, so after the first
        401 every request is one round trip (the "already mirrored" path relies on it).
        """
        with self._lock:
            challenge = self._challenges.get(host)
        if challenge is None:
            return None
        creds = self._creds(host)
        if challenge.scheme == "basic":
            if not creds:
                return None
            raw = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            return f"Basic {raw}"
        key = (host, scopes)
        if not fresh:
            with self._lock:
                cached = self._tokens.get(key)
            if cached and cached[1] > time.monotonic():
                return f"Bearer {cached[0]}"
        wanted = _merge_scopes([*scopes, *([extra_scope] if extra_scope else [])])
        token, lifetime = self._fetch_token(host, challenge, wanted, creds)
        with self._lock:
            # Renew a bit early so a token doesn't expire between our check and its use.
            self._tokens[key] = (token, time.monotonic() + max(lifetime - 15, lifetime / 2))
        return f"Bearer {token}"

    def _fetch_token(self, host: str, challenge: _Challenge, scopes: tuple[str, ...], creds) -> tuple[str, float]:
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("http://", "https://")):
            raise RegistryError(f"registry {host} asked for a bearer token but gave no usable realm ({realm!r})")
        realm_host = _authority(realm)
        if not _same_site(realm_host, _api_host(host)):
            # A realm elsewhere must be allowed in its own right (the list, or operator-configured).
            if self._policy is None or not self._policy.allowed_explicitly(realm_host):
                raise RegistryError(
                    f"registry {host} sent Hoist to a token server on another host ({realm_host}); "
                    f"that is {OUTBOUND_REFUSED_TEXT} unless the host is in HOIST_ALLOWED_REGISTRIES",
                    retryable=False, code=OUTBOUND_REFUSED)
        creds = self._realm_credentials(host, realm_host, creds)
        params: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        params.extend(("scope", s) for s in scopes)
        auth = None
        if creds:
            params.append(("account", creds[0]))
            auth = httpx.BasicAuth(creds[0], creds[1])
        self._paced(host, f"getting a token for {host}")
        try:
            extra = self._timeout_within_deadline(None, f"getting a token for {host}", host)
            resp = self._http.get(realm, params=params, auth=auth, follow_redirects=True, **extra)
        except OutboundRefused as e:
            raise _refused(e, f"getting a token for {host}") from None
        except httpx.TimeoutException as e:
            raise RegistryError(f"timed out getting a token for {host} from {realm}", retryable=True) from e
        except httpx.TransportError as e:
            raise RegistryError(f"could not reach the token server {realm} for {host}: {e}", retryable=True) from e
        finally:
            self._count()
        if resp.status_code in (401, 403):
            who = f"user '{creds[0]}'" if creds else "anonymous access"
            _, detail = _registry_errors(resp)
            raise RegistryError(
                f"token server for {host} refused {who} (HTTP {resp.status_code}{': ' + detail if detail else ''}); "
                f"check the credentials configured for {host}",
                retryable=False,
                status=resp.status_code,
            )
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RegistryError(f"token server for {host} failed with HTTP {resp.status_code}", retryable=True, status=resp.status_code)
        if resp.status_code != 200:
            raise RegistryError(f"token server for {host} answered HTTP {resp.status_code}", status=resp.status_code)
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
            lifetime = float(doc.get("expires_in") or 60)
        except Exception:
            token, lifetime = None, 0
        if not token:
            raise RegistryError(f"token server for {host} returned no token")
        return token, lifetime

    def _realm_credentials(self, host: str, realm_host: str, creds):
        """Credentials go only to the host they were configured for: the registry's own go to
        its token server when that is the same host (or Docker Hub's known pair); a token
        server elsewhere gets the credentials configured for it, if any, else none."""
        realm_name, _ = split_host(realm_host)
        registry_name, _ = split_host(_api_host(host))
        if realm_host == _api_host(host) or realm_name == registry_name:
            return creds
        if host == DOCKER_HUB and realm_name == DOCKER_HUB_AUTH:
            return creds
        return self._creds(realm_host) or self._creds(realm_name)

    def _count(self) -> None:
        with self._lock:
            self._request_count += 1

    def _send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        host: str,
        scopes: tuple[str, ...],
        what: str,
        headers: Mapping[str, str] | None = None,
        content=None,
        stream: bool = False,
        follow_redirects: bool = False,
        replayable: bool = True,
        timeout: float | None = None,
        bulk: bool = False,
    ) -> httpx.Response:
        """Send one request, answering at most one auth challenge; map transport failures.

        Returns the response whatever its status (callers decide what a 404 means);
        a still-401/403 response means authentication failed. ``replayable=False``
        (a streamed body) skips the challenge retry: the body cannot be sent twice.
        ``bulk``: a blob's body goes through it (the blob transport); everything else
        about the request (policy, auth, pacing, timeouts, metrics) is the same.
        """
        client = self._bulk if bulk else self._http
        hdrs = dict(headers or {})
        self._check_policy(host)
        auth = self._auth_header(host, scopes)
        answered = False
        while True:
            if auth:
                hdrs["Authorization"] = auth
            else:
                hdrs.pop("Authorization", None)
            self._paced(host, what)
            try:
                extra = self._timeout_within_deadline(timeout, what, host)
                request = client.build_request(method, url, headers=hdrs, content=content, **extra)
                resp = client.send(request, stream=stream, follow_redirects=follow_redirects)
            except OutboundRefused as e:
                self._observed(host, "refused")
                raise _refused(e, what) from None
            except httpx.TimeoutException as e:
                self._observed(host, "timeout")
                raise RegistryError(f"registry {host} timed out while {what}", retryable=True) from e
            except httpx.TransportError as e:
                self._observed(host, "error")
                raise RegistryError(f"could not reach registry {host} while {what}: {e or type(e).__name__}", retryable=True) from e
            finally:
                self._count()
            self._observed(host, str(resp.status_code))
            if resp.status_code in (429, 503):
                self._told_to_wait(host, resp)
            if resp.status_code != 401 or answered or not replayable:
                return resp
            challenge = _parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            if challenge is None or (challenge.scheme == "basic" and not self._creds(host)):
                return resp
            with self._lock:
                self._challenges[host] = challenge
            new_auth = self._auth_header(host, scopes, fresh=True, extra_scope=challenge.params.get("scope"))
            if new_auth is None or new_auth == auth and challenge.scheme == "basic":
                return resp  # the credentials we have were already refused
            _close(resp)
            auth, answered = new_auth, True

    def _paced(self, host: str, what: str) -> None:
        """Wait for `host`'s rate limit (shared by every process), or fail if that takes too long."""
        if self._throttle is not None:
            left = self._remaining(what, host)
            self._throttle(host, left)

    def _told_to_wait(self, host: str, resp: httpx.Response) -> None:
        seconds = retry_after_seconds(resp.headers.get("Retry-After", ""))
        if seconds is not None and self._on_retry_after is not None:
            try:
                self._on_retry_after(host, seconds)
            except Exception:  # bookkeeping must never break a call
                pass

    def _check_policy(self, host: str) -> None:
        if self._policy is not None:
            try:
                self._policy.check_host(_api_host(host))
            except OutboundRefused as e:
                raise _refused(e, f"contacting {host}") from None

    def _timeout_within_deadline(self, timeout: float | None, what: str, host: str) -> dict:
        left = self._remaining(what, host)
        if left is None:
            return {"timeout": timeout} if timeout is not None else {}
        configured = self._http.timeout
        cap = lambda value: left if value is None else min(value, left)  # noqa: E731
        if timeout is not None:
            return {"timeout": cap(timeout)}
        return {"timeout": httpx.Timeout(connect=cap(configured.connect), read=cap(configured.read),
                                         write=cap(configured.write), pool=cap(configured.pool))}

    def _error(self, resp: httpx.Response, what: str, *, not_found: str | None = None) -> RegistryError:
        """Turn an unexpected response into a RegistryError an operator can act on."""
        status = resp.status_code
        code, detail = _registry_errors(resp)
        _close(resp)
        suffix = f" ({code}{': ' + detail if detail and detail != code else ''})" if code else (f" ({detail})" if detail else "")
        if status in (401, 403):
            return RegistryError(
                f"registry refused access while {what}: HTTP {status}{suffix}; check the credentials and permissions for this registry",
                retryable=False,
                status=status,
                code=code,
            )
        if status == 404:
            return RegistryError(f"{not_found or 'not found'} while {what}{suffix}", retryable=False, status=status, code=code)
        if status in (408, 429) or status >= 500:
            wait = retry_after_seconds(resp.headers.get("Retry-After", ""))
            said = f"; it asked for {wait:g} s" if wait is not None else ""
            return RegistryError(f"registry failed with HTTP {status} while {what}{suffix}{said}; will retry", retryable=True,
                                 status=status, code=code, retry_after=wait)
        return RegistryError(f"registry answered HTTP {status} while {what}{suffix}", retryable=False, status=status, code=code)

    # -- public read API
    def resolve(self, ref: RefLike) -> str:
        """The digest ``ref`` points at. One HEAD; a GET only if the registry omits the digest header.

        For a digest reference, checks it exists and returns it.
        """
        r = _as_ref(ref)
        scopes = (_pull_scope(r.repository),)
        what = f"resolving {r}"
        label = f"tag '{r.tag or 'latest'}'" if not r.digest else f"manifest {r.digest}"
        resp = self._send("HEAD", self._url(r, "manifests", r.reference), host=r.registry, scopes=scopes, what=what, headers={"Accept": MANIFEST_ACCEPT})
        if resp.status_code != 200:
            raise self._error(resp, what, not_found=f"{label} not found in {r.name}")
        digest = resp.headers.get("Docker-Content-Digest", "")
        if not is_digest(digest):
            # Some registries/proxies drop the header on HEAD: hash the bytes ourselves.
            digest = self.fetch_manifest(r).digest
        if r.digest and digest != r.digest:
            raise RegistryError(f"registry returned digest {digest} for {r}: the content does not match the requested digest")
        return digest

    def exists(self, repo_ref: RefLike, digest: str | None = None) -> bool:
        """Is manifest ``digest`` present in ``repo_ref``'s repository? One HEAD."""
        r = _as_ref(repo_ref)
        digest = _check_digest(digest or r.digest, f"checking {r.name}")
        return self._manifest_exists(r, digest, (_pull_scope(r.repository),))

    def _manifest_exists(self, r: ImageRef, digest: str, scopes: tuple[str, ...]) -> bool:
        what = f"checking for {r.name}@{digest}"
        resp = self._send("HEAD", self._url(r, "manifests", digest), host=r.registry, scopes=scopes, what=what, headers={"Accept": MANIFEST_ACCEPT})
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise self._error(resp, what)

    def fetch_manifest(self, ref: RefLike, *, scopes: tuple[str, ...] | None = None) -> Manifest:
        """GET a manifest's exact bytes; verified against the digest when ``ref`` has one."""
        r = _as_ref(ref)
        scopes = scopes or (_pull_scope(r.repository),)
        what = f"fetching manifest {r}"
        resp = self._send(
            "GET",
            self._url(r, "manifests", r.reference),
            host=r.registry,
            scopes=scopes,
            what=what,
            headers={"Accept": MANIFEST_ACCEPT, **_IDENTITY},
            stream=True,
        )
        try:
            if resp.status_code != 200:
                label = f"manifest {r.digest}" if r.digest else f"tag '{r.tag or 'latest'}'"
                raise self._error(resp, what, not_found=f"{label} not found in {r.name}")
            body = bytearray()
            try:
                for chunk in resp.iter_bytes():
                    body += chunk
                    self._remaining(what, r.registry)  # a host trickling bytes runs out of time here
                    if len(body) > MAX_MANIFEST_BYTES:
                        raise RegistryError(f"manifest {r} is larger than {MAX_MANIFEST_BYTES} bytes; refusing it")
            except httpx.HTTPError as e:
                raise RegistryError(f"lost connection to registry {r.registry} while {what}: {e}", retryable=True) from e
            content = bytes(body)
            content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        finally:
            _close(resp)
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        if r.digest and digest != r.digest:
            raise RegistryError(
                f"manifest bytes served for {r} hash to {digest}, not the requested digest: "
                "the registry returned different content; refusing to use it"
            )
        return Manifest(digest, _media_type(content, content_type, str(r)), content)

    # -- copy
    def copy(
        self,
        src_ref: RefLike,
        dest_repo: RefLike,
        digest: str | None = None,
        *,
        progress: Callable[[str, str, int], None] | None = None,
    ) -> CopyResult:
        """Copy image ``digest`` (default: ``src_ref``'s digest, else its tag resolved) to ``dest_repo``.

        ``dest_repo`` is ``host/path`` (no tag, no digest): the image is pushed by digest.
        ``progress(event, digest, size)`` is called after each blob and manifest with
        event in blob_skipped / blob_mounted / blob_copied / manifest_pushed (from worker
        threads; an exception raised by it aborts the copy, nothing more is pushed).
        """
        src = _as_ref(src_ref)
        dest = _as_ref(dest_repo)
        if dest.tag or dest.digest:
            raise InvalidReference(f"destination '{dest}' must be a repository (host/path) without a tag or digest")
        if digest is not None:
            _check_digest(digest, f"copying {src}")
            if src.digest and src.digest != digest:
                raise InvalidReference(f"copying {src}: the reference's digest differs from the requested digest {digest}")
        want = digest or src.digest or self.resolve(src)
        src = _with_digest(src, want)
        same_registry = src.registry == dest.registry
        src_scopes = (_pull_scope(src.repository),)
        dest_scopes = _merge_scopes([_push_scope(dest.repository), *([_pull_scope(src.repository)] if same_registry else [])])

        # Already mirrored: one HEAD and done (the common case on every re-reconcile).
        if self._manifest_exists(dest, want, dest_scopes):
            return CopyResult(want)
        if same_registry and src.repository == dest.repository:
            raise RegistryError(f"manifest {want} not found in {src.name}", retryable=False, status=404)

        to_push, blobs = self._plan(src, dest, want, src_scopes, dest_scopes)
        counts = self._copy_blobs(src, dest, list(blobs.values()), same_registry, src_scopes, dest_scopes, progress)
        # Children before parents (to_push is post-order), and only now that every blob is in place.
        for manifest in to_push:
            self._push_manifest(dest, manifest, dest_scopes)
            if progress:
                progress("manifest_pushed", manifest.digest, len(manifest.content))
        return CopyResult(want, manifests_pushed=len(to_push), **counts)

    def _plan(self, src: ImageRef, dest: ImageRef, digest: str, src_scopes, dest_scopes) -> tuple[list[Manifest], dict[str, dict]]:
        """Walk the manifest graph from ``digest``: manifests to push (post-order) and blobs they need."""
        to_push: list[Manifest] = []
        blobs: dict[str, dict] = {}
        seen: set[str] = set()

        def visit(d: str, depth: int, check_dest: bool) -> None:
            if d in seen:
                return
            seen.add(d)
            if depth > MAX_INDEX_DEPTH:
                raise RegistryError(f"image index {src.name}@{digest} nests deeper than {MAX_INDEX_DEPTH} levels; refusing it")
            # A child already at the destination has all its blobs there too
            # (a registry only accepts a manifest whose blobs it holds): skip its subtree.
            if check_dest and self._manifest_exists(dest, d, dest_scopes):
                return
            manifest = self.fetch_manifest(_with_digest(src, d), scopes=src_scopes)
            doc = _parse_json(manifest, _with_digest(src, d))
            if manifest.is_index:
                for child in _descriptors(doc.get("manifests"), f"{src.name}@{d}", "manifests"):
                    visit(child["digest"], depth + 1, True)
            else:
                config = doc.get("config")
                refs = ([config] if config is not None else []) + list(doc.get("layers") or [])
                for desc in _descriptors(refs, f"{src.name}@{d}", "blobs"):
                    blobs.setdefault(desc["digest"], desc)
            to_push.append(manifest)

        visit(digest, 0, False)
        return to_push, blobs

    def _copy_blobs(self, src, dest, descs: list[dict], same_registry: bool, src_scopes, dest_scopes, progress) -> dict[str, int]:
        counts = {"blobs_copied": 0, "blobs_skipped": 0, "blobs_mounted": 0, "bytes_copied": 0}
        lock = threading.Lock()
        # The copy's deadline is the caller thread's; the copy threads keep it too.
        ends = getattr(self._deadline, "at", None)

        def one(desc: dict) -> None:
            with _Deadline(self._deadline, ends) if ends is not None else nullcontext():
                action, nbytes = self._copy_blob(src, dest, desc, same_registry, src_scopes, dest_scopes)
            with lock:
                counts[f"blobs_{action}"] += 1
                counts["bytes_copied"] += nbytes
            if progress:
                progress(f"blob_{action}", desc["digest"], int(desc.get("size") or 0))

        # Biggest first: the long transfers start early, small ones fill the gaps.
        descs = sorted(descs, key=lambda d: -int(d.get("size") or 0))
        workers = min(self.max_workers, len(descs))
        if workers <= 1:
            for desc in descs:
                one(desc)
            return counts
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="registry-copy") as pool:
            futures = [pool.submit(one, d) for d in descs]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for f in pending:
                f.cancel()  # not started yet: don't start them; running ones finish or fail on their own
            wait(futures)
        errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
        if errors:
            # A permanent problem is the more useful report: retrying won't fix it.
            permanent = [e for e in errors if not (isinstance(e, RegistryError) and e.retryable)]
            raise (permanent or errors)[0]
        return counts

    def _copy_blob(self, src: ImageRef, dest: ImageRef, desc: dict, same_registry: bool, src_scopes, dest_scopes) -> tuple[str, int]:
        digest = desc["digest"]
        if desc.get("mediaType") in _FOREIGN_LAYER_TYPES and desc.get("urls"):
            return "skipped", 0  # pulled from its URLs by the runtime, never stored in a registry
        base = self._base(dest.registry)
        what = f"checking blob {digest} in {dest.name}"
        resp = self._send("HEAD", f"{base}/v2/{dest.repository}/blobs/{digest}", host=dest.registry, scopes=dest_scopes, what=what)
        if resp.status_code == 200:
            return "skipped", 0
        if resp.status_code != 404:
            raise self._error(resp, what)

        # One retry: a token can expire during a long streamed PUT, which cannot be replayed.
        for attempt in (1, 2):
            upload_url: httpx.URL | None = None
            if same_registry and src.repository != dest.repository:
                what = f"mounting blob {digest} from {src.repository} into {dest.name}"
                url = f"{base}/v2/{dest.repository}/blobs/uploads/?mount={quote(digest)}&from={quote(src.repository, safe='')}"
                resp = self._send("POST", url, host=dest.registry, scopes=dest_scopes, what=what)
                if resp.status_code == 201:
                    return "mounted", 0
                if resp.status_code != 202:
                    raise self._error(resp, what)
                upload_url = self._location(resp, what)  # mount refused: the registry opened an upload instead
            else:
                what = f"starting blob upload to {dest.name}"
                resp = self._send("POST", f"{base}/v2/{dest.repository}/blobs/uploads/", host=dest.registry, scopes=dest_scopes, what=what)
                if resp.status_code != 202:
                    raise self._error(resp, what)
                upload_url = self._location(resp, what)
            try:
                nbytes = self._stream_blob(src, dest, desc, upload_url, src_scopes, dest_scopes)
            except _AuthExpired:
                self._cancel_upload(dest, upload_url, dest_scopes)
                if attempt == 2:
                    raise RegistryError(f"registry refused access while uploading blob {digest} to {dest.name}", status=401) from None
                with self._lock:
                    self._tokens.pop((dest.registry, dest_scopes), None)
                continue
            except BaseException:
                self._cancel_upload(dest, upload_url, dest_scopes)
                raise
            return "copied", nbytes
        raise AssertionError("unreachable")

    def _stream_blob(self, src: ImageRef, dest: ImageRef, desc: dict, upload_url: httpx.URL, src_scopes, dest_scopes) -> int:
        """Pipe one blob from the source's GET into one monolithic PUT at the destination.

        The bytes pass through as read, ``chunk_size`` at a time (memory per transfer is
        about two chunks whatever the blob size), hashed on the way. The digest is
        checked before the last chunk is sent: a source serving other bytes (or more,
        or fewer) fails the PUT before its last byte, so not even a destination that
        skipped its own check could commit them.
        """
        digest = desc["digest"]
        size = desc.get("size")
        what = f"downloading blob {digest} from {src.name}"
        source = self._send(
            "GET",
            f"{self._base(src.registry)}/v2/{src.repository}/blobs/{digest}",
            host=src.registry,
            scopes=src_scopes,
            what=what,
            headers=_IDENTITY,
            stream=True,
            follow_redirects=True,  # S3/CDN backed registries redirect blob downloads
            bulk=True,
        )
        try:
            if source.status_code != 200:
                raise self._error(source, what, not_found=f"blob {digest} not found in {src.name}")
            length = source.headers.get("Content-Length")
            if isinstance(size, int) and length is not None and length.isdigit() and int(length) != size:
                raise RegistryError(f"blob {digest} in {src.name} is {length} bytes but its manifest says {size}; refusing it")
            if not isinstance(size, int):
                size = int(length) if length and length.isdigit() else None
            hasher = hashlib.sha256()
            sent = 0

            def verify() -> None:
                computed = "sha256:" + hasher.hexdigest()
                if computed != digest:
                    raise RegistryError(f"blob {digest} from {src.name} has content hashing to {computed}: the source is "
                                        "corrupt; refusing it")

            def body() -> Iterator[bytes]:
                nonlocal sent
                held = b""
                try:
                    # iter_raw: the bytes exactly as served (no decoding); the digest is the judge.
                    for chunk in source.iter_raw():
                        hasher.update(chunk)  # releases the GIL: the other copies go on meanwhile
                        self._remaining(what, src.registry)  # a host trickling bytes runs out of time here
                        if size is None:
                            # Length unknown: each chunk waits for the next, the last for the digest check.
                            chunk, held = held, chunk
                            if not chunk:
                                continue
                        elif sent + len(chunk) >= size:
                            if sent + len(chunk) > size:
                                raise RegistryError(f"blob {digest} from {src.name} is larger than the {size} bytes its "
                                                    "manifest says; refusing it")
                            verify()  # the last bytes go only once all of them are known good
                        sent += len(chunk)
                        yield chunk
                except httpx.HTTPError as e:
                    raise RegistryError(f"lost connection to {src.registry} while {what}: {e or type(e).__name__}", retryable=True) from e
                if size is not None and sent != size:
                    raise RegistryError(f"blob {digest} from {src.name} ended after {sent} of its {size} bytes; refusing it")
                if not size:  # unknown, or empty: nothing was checked yet
                    verify()
                if held:
                    sent += len(held)
                    yield held

            headers = {"Content-Type": "application/octet-stream"}
            if size is not None:
                headers["Content-Length"] = str(size)  # else chunked transfer-encoding
            put_what = f"uploading blob {digest} to {dest.name}"
            resp = self._send(
                "PUT",
                _with_query_param(upload_url, "digest", digest),
                host=dest.registry,
                scopes=dest_scopes,
                what=put_what,
                headers=headers,
                content=body(),
                replayable=False,
                bulk=True,
            )
        finally:
            _close(source)
        if resp.status_code == 401:
            _close(resp)
            raise _AuthExpired()
        if resp.status_code not in (201, 204):
            code, _ = _registry_errors(resp)
            if code == "DIGEST_INVALID" or code == "SIZE_INVALID":
                _close(resp)
                raise RegistryError(f"{dest.name} rejected blob {digest} from {src.name}: content does not match its digest ({code})", status=resp.status_code, code=code)
            err = self._error(resp, put_what)
            if code in _RETRYABLE_UPLOAD_CODES:
                err.retryable = True
            raise err
        got = resp.headers.get("Docker-Content-Digest")
        _close(resp)
        if got and got != digest:
            raise RegistryError(f"{dest.name} stored blob {digest} under digest {got}; refusing to continue")
        if sent != (size if size is not None else sent):
            # The destination answered before taking the whole body: it did not store these bytes.
            raise RegistryError(f"{dest.name} answered before blob {digest} was sent in full", retryable=True)
        return sent

    def _location(self, resp: httpx.Response, what: str) -> httpx.URL:
        loc = resp.headers.get("Location")
        _close(resp)
        if not loc:
            raise RegistryError(f"registry sent no upload Location while {what}", retryable=True, status=resp.status_code)
        return resp.request.url.join(loc)  # may be relative to the request URL

    def _cancel_upload(self, dest: ImageRef, upload_url: httpx.URL, scopes) -> None:
        """Best effort: free the registry's half-written upload. A failure here changes nothing,
        so don't let a hanging registry make the caller wait a full timeout a second time."""
        try:
            _close(self._send("DELETE", upload_url, host=dest.registry, scopes=scopes, what="cancelling an upload", timeout=5.0))
        except Exception:
            pass

    def _push_manifest(self, dest: ImageRef, manifest: Manifest, scopes) -> None:
        what = f"pushing manifest {manifest.digest} to {dest.name}"
        resp = self._send(
            "PUT",
            self._url(dest, "manifests", manifest.digest),  # by digest: pushing never moves a tag
            host=dest.registry,
            scopes=scopes,
            what=what,
            headers={"Content-Type": manifest.media_type},
            content=manifest.content,
        )
        if resp.status_code not in (200, 201):
            code, _ = _registry_errors(resp)
            err = self._error(resp, what)
            if code in ("BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN", "MANIFEST_UNKNOWN"):
                # Something we copied vanished (e.g. destination garbage collection): a retry re-copies it.
                err.retryable = True
            raise err
        got = resp.headers.get("Docker-Content-Digest")
        _close(resp)
        if got and got != manifest.digest:
            raise RegistryError(f"{dest.name} stored manifest {manifest.digest} under digest {got}; refusing it")

    # -- keep tags
    def manifest_tree(self, repo_ref: RefLike, digest: str) -> list[Manifest]:
        """Manifest ``digest`` of ``repo_ref`` and, for an index, every manifest under it:
        children before their index, ``digest`` itself last. Read with push rights asked for
        as well, so the tags written next use the same token."""
        r = _as_ref(repo_ref)
        scopes = (_push_scope(r.repository),)
        found: list[Manifest] = []
        seen: set[str] = set()

        def visit(d: str, depth: int) -> None:
            if d in seen:
                return
            seen.add(d)
            if depth > MAX_INDEX_DEPTH:
                raise RegistryError(f"image index {r.name}@{digest} nests deeper than {MAX_INDEX_DEPTH} levels; refusing it")
            manifest = self.fetch_manifest(_with_digest(r, d), scopes=scopes)
            if manifest.is_index:
                doc = _parse_json(manifest, _with_digest(r, d))
                for child in _descriptors(doc.get("manifests"), f"{r.name}@{d}", "manifests"):
                    visit(child["digest"], depth + 1)
            found.append(manifest)

        visit(_check_digest(digest, f"reading {r.name}"), 0)
        return found

    def put_tag(self, repo_ref: RefLike, tag: str, manifest: Manifest) -> None:
        """Point ``tag`` of ``repo_ref`` at ``manifest``: its exact bytes PUT under the tag with
        its own media type. Never re-serialised: the digest is over these bytes, so the registry
        stores nothing new and the tag lands on exactly that digest."""
        r = _as_ref(repo_ref)
        if not references.TAG_RE.match(tag):
            raise InvalidReference(f"'{tag}' is not a valid tag")
        what = f"tagging {r.name}@{manifest.digest} as '{tag}'"
        resp = self._send("PUT", self._url(r, "manifests", tag), host=r.registry, scopes=(_push_scope(r.repository),),
                          what=what, headers={"Content-Type": manifest.media_type}, content=manifest.content)
        if resp.status_code not in (200, 201):
            raise self._error(resp, what)
        got = resp.headers.get("Docker-Content-Digest")
        _close(resp)
        if got and got != manifest.digest:
            raise RegistryError(f"{r.name} stored tag '{tag}' as {got}, not {manifest.digest}; refusing it")

    def tag_target(self, repo_ref: RefLike, tag: str) -> str | None:
        """The digest ``tag`` points at now, None when there is no such tag. One HEAD."""
        base = _as_ref(repo_ref)
        r = ImageRef(base.registry, base.repository, tag)
        try:
            return self.resolve(r)
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise

    def put_placeholder(self, repo_ref: RefLike, tag: str) -> str:
        """Point ``tag`` at ``PLACEHOLDER`` (what released keep tags point at); its config blob is
        uploaded the first time a repository lacks it. Returns the placeholder's digest."""
        r = _as_ref(repo_ref)
        try:
            self.put_tag(r, tag, PLACEHOLDER)
        except RegistryError as exc:
            if exc.code not in ("MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN"):
                raise
            self._upload_small_blob(r, PLACEHOLDER_CONFIG)
            self.put_tag(r, tag, PLACEHOLDER)
        return PLACEHOLDER.digest

    def _upload_small_blob(self, dest: ImageRef, data: bytes) -> None:
        """A blob small enough for one PUT after the upload is opened (a few bytes of config)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        scopes = (_push_scope(dest.repository),)
        what = f"uploading blob {digest} to {dest.name}"
        resp = self._send("POST", f"{self._base(dest.registry)}/v2/{dest.repository}/blobs/uploads/", host=dest.registry,
                          scopes=scopes, what=what)
        if resp.status_code != 202:
            raise self._error(resp, what)
        upload_url = self._location(resp, what)
        resp = self._send("PUT", _with_query_param(upload_url, "digest", digest), host=dest.registry, scopes=scopes, what=what,
                          headers={"Content-Type": "application/octet-stream"}, content=data)
        if resp.status_code not in (201, 204):
            raise self._error(resp, what)
        _close(resp)


# What a released keep tag points at (promotions.keeping): a registry can't delete a tag without
# deleting the manifest under it, so a tag Hoist no longer needs is moved here, and the digest it
# kept is free for clean-up. An OCI image manifest with a minimal config and no layers, the same
# bytes in every repository (one stored manifest however many tags point at it); distribution
# 2.8 accepts it once the config blob is in the repository.
PLACEHOLDER_CONFIG = json.dumps({
    "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
    "config": {"Labels": {"dev.hoist.placeholder": "released hoist-keep tags point here"}},
}, sort_keys=True, separators=(",", ":")).encode()
_PLACEHOLDER_BYTES = json.dumps({
    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(PLACEHOLDER_CONFIG),
               "digest": "sha256:" + hashlib.sha256(PLACEHOLDER_CONFIG).hexdigest()},
    "layers": [],
    "annotations": {"org.opencontainers.image.title": "hoist-keep placeholder",
                    "org.opencontainers.image.description": "A hoist-keep-* tag released by Hoist: the digest it kept "
                                                            "is free for clean-up. Not an image to run."},
}, sort_keys=True, separators=(",", ":")).encode()
PLACEHOLDER = Manifest("sha256:" + hashlib.sha256(_PLACEHOLDER_BYTES).hexdigest(), OCI_MANIFEST, _PLACEHOLDER_BYTES)


class _AuthExpired(Exception):
    """Internal: the streamed upload got a 401 (token expired mid-transfer)."""


DOCKER_HUB_AUTH = "auth.docker.io"


MAX_RETRY_AFTER_S = 3600.0


def retry_after_seconds(value: str) -> float | None:
    """A Retry-After header as seconds from now: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
    Capped at an hour: a registry can't switch Hoist off for longer by saying so."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, min((when - datetime.datetime.now(datetime.timezone.utc)).total_seconds(), MAX_RETRY_AFTER_S))


def _api_host(host: str) -> str:
    """Where a registry host's API answers: Docker Hub's is not docker.io itself."""
    return DOCKER_HUB_API if host == DOCKER_HUB else host
OUTBOUND_REFUSED_TEXT = "not allowed by Hoist's outbound policy"


class _Deadline:
    def __init__(self, local: threading.local, at: float):
        self._local, self._at = local, at

    def __enter__(self) -> None:
        self._previous = getattr(self._local, "at", None)
        # Nested deadlines: the earlier one wins.
        self._local.at = self._at if self._previous is None else min(self._previous, self._at)

    def __exit__(self, *exc) -> None:
        self._local.at = self._previous


def _refused(exc: OutboundRefused, what: str) -> RegistryError:
    return RegistryError(f"{exc} (while {what})", retryable=False, code=OUTBOUND_REFUSED)


def _authority(url: str) -> str:
    """host[:port] of a URL, lower-cased, as references write registry hosts."""
    parsed = httpx.URL(url)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{host}:{parsed.port}" if parsed.port else host


def _same_site(realm_host: str, registry_host: str) -> bool:
    """A token server on the registry's own host, or in its parent domain
    (registry.gitlab.com → gitlab.com, registry-1.docker.io → auth.docker.io)."""
    realm, _ = split_host(realm_host)
    registry, _ = split_host(registry_host)
    if realm == registry:
        return True
    labels = registry.split(".")
    parent = ".".join(labels[1:]) if len(labels) > 2 else ""
    return bool(parent) and ip_address_of(registry) is None and (realm == parent or realm.endswith("." + parent))


class _PolicedBackend(httpcore.NetworkBackend):
    """Connects only where the outbound policy allows, judged on the addresses DNS gave.

    The name is resolved here, once; the addresses checked are the addresses
    connected to, so DNS can't answer differently between the check and the
    connection (rebinding). TLS still verifies the name (httpcore passes the
    request's host as server_hostname). Every connection passes here: the
    registry's, its token server's, and each redirect's.
    """

    def __init__(self, policy: Policy):
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        addresses = _checked_addresses(self._policy, host, port, httpcore.ConnectError)
        last: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                               socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last or httpcore.ConnectError(f"{host} resolved to no address")

    def connect_unix_socket(self, *args, **kwargs):
        raise OutboundRefused("unix sockets are not registries")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _checked_addresses(policy: Policy, host: str, port: int, error: type[Exception]) -> list[str]:
    """`host` resolved once, every address checked by the outbound policy (OutboundRefused)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise error(f"could not resolve {host}: {exc}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    policy.check_connection(host, port, addresses)
    return addresses


def _policed_transport(policy: Policy, *, verify, limits: httpx.Limits) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(verify=_ssl_context(verify), limits=limits)
    # httpx doesn't take a network backend; its connection pool does. Swapped here,
    # before the first request; tests prove the policy is in force at connect time.
    pool = transport._pool
    if not hasattr(pool, "_network_backend"):
        raise RuntimeError("httpcore changed: the outbound policy can't be installed on this version")
    pool._network_backend = _PolicedBackend(policy)
    return transport


# --------------------------------------------------------------------------- TLS settings

_ssl_contexts: dict[tuple, ssl.SSLContext] = {}
_ssl_contexts_lock = threading.Lock()


def _ssl_context(verify: bool | str | ssl.SSLContext) -> ssl.SSLContext:
    """The process's one TLS context for a `verify` setting (True, False, a CA file or directory).

    Building one parses the whole CA bundle: about 20 ms of CPU, which httpx spends on
    every client and transport it makes. A context is only configuration, shared safely
    by any number of connections and threads, so clients with the same setting share one.
    """
    if isinstance(verify, ssl.SSLContext):
        return verify
    key = (verify, os.environ.get("SSL_CERT_FILE", ""), os.environ.get("SSL_CERT_DIR", ""))
    with _ssl_contexts_lock:
        context = _ssl_contexts.get(key)
        if context is None:
            if isinstance(verify, str):
                context = (ssl.create_default_context(capath=verify) if os.path.isdir(verify)
                           else ssl.create_default_context(cafile=verify))
            else:
                context = httpx.create_ssl_context(verify=bool(verify))
            _ssl_contexts[key] = context
    return context


# --------------------------------------------------------------------------- blob transport


class _BlobConnection(http.client.HTTPConnection):
    """One keep-alive HTTP/1.1 connection of the blob transport; it opens through the transport
    (the outbound policy, TLS), never by itself."""

    def __init__(self, transport: "_BlobTransport", scheme: str, host: str, port: int, connect_timeout: float | None):
        super().__init__(host, port, timeout=connect_timeout)
        self._transport = transport
        self._scheme = scheme
        self.idle_since = 0.0
        self.request_stream: httpx.SyncByteStream | None = None  # the body of the request in flight

    def connect(self) -> None:
        self.sock = self._transport._open(self._scheme, self.host, self.port, self.timeout)


def _unusable(sock) -> bool:
    """An idle keep-alive connection that has something to read was closed by the server
    (or sent what nobody asked for): don't send on it."""
    if sock is None or sock.fileno() < 0:
        return True
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _BlobTransport(httpx.BaseTransport):
    """The httpx transport blob downloads and uploads take: HTTP/1.1 on plain sockets.

    httpcore reads a body 64 KiB at a time through h11's buffer (two more copies of
    every byte, a dozen Python frames a read) and sends a body by re-slicing it after
    each partial send; for a mirror that was most of the client's CPU. Here the
    stdlib's http.client does the framing (Content-Length, chunked, keep-alive), a
    response body is read from the socket straight into the bytes handed on,
    `chunk_size` at a time, and a request body goes out with sendall.

    What stays as with the rest of the client: requests are built, authenticated,
    paced, timed and redirected by httpx.Client (RegistryClient._send), timeouts are
    the request's (connect, read, write), and every connection, a redirect's
    included, is opened only to addresses the outbound policy allowed after DNS
    (the name resolved once, the checked address connected to; TLS verifies the
    name). Idle connections are kept per host for KEEPALIVE_S.
    """

    KEEPALIVE_S = 4.0  # below the usual server idle timeouts (5 s and up)

    def __init__(self, policy: Policy | None, ssl_context: ssl.SSLContext, *, chunk_size: int, max_idle: int):
        self._policy = policy
        self._ssl_context = ssl_context
        self._chunk_size = chunk_size
        self._max_idle = max(1, max_idle)
        self._idle: dict[tuple[str, str, int], list[_BlobConnection]] = {}
        self._lock = threading.Lock()

    # -- connections
    def _open(self, scheme: str, host: str, port: int, timeout: float | None) -> socket.socket:
        addresses = _checked_addresses(self._policy, host, port, httpx.ConnectError) if self._policy is not None else [host]
        sock, last = None, None
        for address in addresses:
            try:
                sock = socket.create_connection((address, port), timeout=timeout)
                break
            except socket.timeout as exc:
                last = httpx.ConnectTimeout(f"connecting to {host}:{port} timed out")
                last.__cause__ = exc
            except OSError as exc:
                last = httpx.ConnectError(f"could not connect to {host}:{port}: {exc}")
        if sock is None:
            raise last or httpx.ConnectError(f"{host} resolved to no address")
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._ssl_context.wrap_socket(sock, server_hostname=host)
        except socket.timeout:
            sock.close()
            raise httpx.ConnectTimeout(f"TLS handshake with {host}:{port} timed out") from None
        except (OSError, ValueError) as exc:  # ssl.SSLError, certificate errors are OSErrors
            sock.close()
            raise httpx.ConnectError(f"TLS with {host}:{port} failed: {exc}") from None
        return sock

    def _checkout(self, key: tuple[str, str, int], connect_timeout: float | None) -> tuple[_BlobConnection, bool]:
        stale = []
        now = time.monotonic()
        try:
            with self._lock:
                idle = self._idle.get(key)
                while idle:
                    conn = idle.pop()
                    if now - conn.idle_since < self.KEEPALIVE_S and not _unusable(conn.sock):
                        return conn, True
                    stale.append(conn)
        finally:
            for conn in stale:
                conn.close()
        return _BlobConnection(self, *key, connect_timeout), False

    def _checkin(self, key: tuple[str, str, int], conn: _BlobConnection) -> None:
        conn.idle_since = time.monotonic()
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._max_idle:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()

    # -- one exchange
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"the blob transport speaks http and https, not {url.scheme!r}")
        key = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts = request.extensions.get("timeout", {})
        conn, reused = self._checkout(key, timeouts.get("connect"))
        try:
            try:
                resp = self._exchange(conn, request, timeouts)
            except _StaleConnection as stale:
                # A kept-alive connection the server dropped meanwhile: the request goes again on
                # a new one, unless part of a streamed body went already (its caller retries).
                if not reused or not stale.replayable:
                    raise stale.error from None
                conn.close()
                conn = _BlobConnection(self, *key, timeouts.get("connect"))
                try:
                    resp = self._exchange(conn, request, timeouts)
                except _StaleConnection as again:
                    raise again.error from None
        except BaseException:
            conn.close()  # a body half sent or a response half read: the connection is done
            raise
        version = b"HTTP/1.0" if resp.version == 10 else b"HTTP/1.1"
        return httpx.Response(
            resp.status,
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.msg.items()],
            stream=_BlobBody(self, key, conn, resp, self._chunk_size),
            extensions={"http_version": version, "reason_phrase": (resp.reason or "").encode("latin-1", "replace")},
        )

    def _exchange(self, conn: _BlobConnection, request: httpx.Request, timeouts) -> http.client.HTTPResponse:
        if conn.sock is None:
            conn.connect()
        sock = conn.sock
        conn.request_stream = request.stream
        chunked = request.headers.get("Transfer-Encoding", "").lower() == "chunked"
        try:
            sock.settimeout(timeouts.get("write"))
            conn.putrequest(request.method, request.url.raw_path.decode("ascii"), skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers.raw:
                conn.putheader(name, value)
            conn.endheaders()
        except socket.timeout as exc:
            raise httpx.WriteTimeout("timed out sending the request") from exc
        except OSError as exc:
            raise _StaleConnection(httpx.WriteError(f"sending the request failed: {exc}"), replayable=True) from None
        try:
            # Exceptions raised by the body's producer (a RegistryError) pass through unchanged.
            for part in request.stream:
                if not part:
                    continue
                if chunked:
                    sock.sendall(b"%x\r\n" % len(part))
                    sock.sendall(part)
                    sock.sendall(b"\r\n")
                else:
                    sock.sendall(part)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except socket.timeout as exc:
            raise httpx.WriteTimeout("timed out sending the request body") from exc
        except OSError as exc:
            # The server may have answered early (a 401, a 413) and closed: read what it said.
            early = self._response(conn, timeouts, quiet=True)
            if early is None:
                raise httpx.WriteError(f"sending the request body failed: {exc}") from None
            return early
        return self._response(conn, timeouts)

    @staticmethod
    def _response(conn: _BlobConnection, timeouts, *, quiet: bool = False) -> http.client.HTTPResponse | None:
        try:
            conn.sock.settimeout(timeouts.get("read"))
            return conn.getresponse()
        except Exception as exc:
            if quiet:
                return None
            if isinstance(exc, socket.timeout):
                raise httpx.ReadTimeout("timed out waiting for the response") from exc
            if isinstance(exc, (http.client.RemoteDisconnected, ConnectionError)):
                error = httpx.RemoteProtocolError(f"the server closed the connection: {exc}")
                raise _StaleConnection(error, replayable=isinstance(conn.request_stream, httpx.ByteStream)) from None
            if isinstance(exc, (OSError, http.client.HTTPException)):
                raise httpx.RemoteProtocolError(f"unreadable response: {exc!r}") from None
            raise


class _StaleConnection(Exception):
    """Internal: the connection failed before any answer (`error` is what to raise);
    `replayable`: the request can go again (no body, a body in bytes, or none of it sent)."""

    def __init__(self, error: httpx.TransportError, *, replayable: bool):
        super().__init__(str(error))
        self.error, self.replayable = error, replayable


class _BlobBody(httpx.SyncByteStream):
    """A response body read `chunk_size` at a time, each read landing in the bytes yielded."""

    def __init__(self, transport: _BlobTransport, key, conn: _BlobConnection, resp: http.client.HTTPResponse, chunk_size: int):
        self._transport, self._key, self._conn, self._resp = transport, key, conn, resp
        self._chunk_size = chunk_size
        self._complete = False

    def __iter__(self) -> Iterator[bytes]:
        resp = self._resp
        try:
            while True:
                chunk = resp.read(self._chunk_size)
                if not chunk:
                    break
                yield chunk
        except socket.timeout as exc:
            raise httpx.ReadTimeout("timed out reading the response body") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise httpx.ReadError(f"reading the response body failed: {exc!r}") from None
        if resp.length:  # http.client ends quietly when the peer closes early
            raise httpx.RemoteProtocolError(f"the connection closed {resp.length} bytes before the end of the body")
        self._complete = True

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._complete and self._resp.isclosed() and not self._resp.will_close:
            self._transport._checkin(self._key, conn)
        else:
            self._resp.close()
            conn.close()


# --------------------------------------------------------------------------- outgoing notifications


_posting = threading.local()


class _NotificationURLsStayOutOfLogs(logging.Filter):
    """httpx logs every request's URL at INFO; a notification's URL may be its credential (a Slack
    webhook's path), so its line is dropped (the caller logs the outcome without the URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_posting, "active", False)


logging.getLogger("httpx").addFilter(_NotificationURLsStayOutOfLogs())


@dataclass(frozen=True)
class Answer:
    """What a host answered `post_once`: the status, the headers (lower-case names), the start of the body."""

    status: int
    headers: Mapping[str, str]
    text: str


def post_once(url: str, content: bytes, headers: Mapping[str, str], *, policy: Policy, connect_timeout: float,
              read_timeout: float, deadline: float, max_text: int = 1024) -> Answer:
    """POST `content` to `url` once: a project's notification webhook (promotions.notifications).

    Here because this module is Hoist's one HTTP client: the same outbound policy as every
    registry call (the URL's host before anything, then every address DNS gave, at connect
    time), a timeout per network step and `deadline` for reading the answer, and redirects
    never followed (a 3xx is the answer). At most `max_text` bytes of the body are read.
    Raises RegistryError: retryable when no answer came (timeout, connection refused or
    broken), not when the policy refused the host (code OUTBOUND_REFUSED).
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise RegistryError("not a URL Hoist can send to") from None  # not quoted: it may hold a credential
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise RegistryError("only http:// and https:// URLs with a host are sent to")
    name = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
    try:
        policy.check_host(host)
    except OutboundRefused as exc:
        raise _refused(exc, "sending a notification") from None
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=0)
    started = time.monotonic()
    _posting.active = True
    try:
        with httpx.Client(timeout=httpx.Timeout(read_timeout, connect=connect_timeout), follow_redirects=False,
                          limits=limits, transport=_policed_transport(policy, verify=True, limits=limits)) as client:
            with client.stream("POST", parsed, content=content, headers=dict(headers)) as resp:
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) >= max_text or time.monotonic() - started > deadline:
                        break  # enough to show what it said; the rest is not read
                return Answer(resp.status_code, {k.lower(): v for k, v in resp.headers.items()},
                              bytes(body[:max_text]).decode("utf-8", "replace"))
    except OutboundRefused as exc:
        raise _refused(exc, "sending a notification") from None
    except httpx.TimeoutException:
        raise RegistryError(f"{name} did not answer in time", retryable=True) from None
    except httpx.TransportError as exc:
        raise RegistryError(f"could not reach {name}: {exc or type(exc).__name__}", retryable=True) from None
    finally:
        _posting.active = False


def _is_loopback(host: str) -> bool:
    name = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _media_type(content: bytes, content_type: str, where: str) -> str:
    """The manifest's media type: the registry's Content-Type, else the JSON's own mediaType."""
    if content_type in INDEX_MEDIA_TYPES or content_type in IMAGE_MEDIA_TYPES:
        return content_type
    try:
        doc = json.loads(content)
    except ValueError:
        raise RegistryError(f"manifest {where} is not JSON (Content-Type '{content_type}')") from None
    declared = doc.get("mediaType") if isinstance(doc, dict) else None
    if declared in INDEX_MEDIA_TYPES or declared in IMAGE_MEDIA_TYPES:
        return declared
    if isinstance(doc, dict) and doc.get("schemaVersion") == 2:
        # OCI lets mediaType be omitted: tell the kinds apart by shape.
        if "manifests" in doc:
            return OCI_INDEX
        if "config" in doc and "layers" in doc:
            return OCI_MANIFEST
    raise RegistryError(
        f"manifest {where} has unsupported media type '{declared or content_type or 'unknown'}' "
        "(supported: OCI image/index, Docker manifest v2 schema 2 and manifest list)"
    )


def _parse_json(manifest: Manifest, where: ImageRef) -> dict:
    try:
        doc = json.loads(manifest.content)
    except ValueError:
        raise RegistryError(f"manifest {where} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"manifest {where} is not a JSON object")
    return doc


def _descriptors(items, where: str, kind: str) -> list[dict]:
    if items is None:
        items = []
    if not isinstance(items, list):
        raise RegistryError(f"manifest {where} has a malformed '{kind}' list")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise RegistryError(f"manifest {where} has a malformed descriptor in '{kind}'")
        _check_digest(item.get("digest"), f"manifest {where} references a blob or manifest with a bad digest")
        size = item.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise RegistryError(f"manifest {where} gives {item.get('digest')} an invalid size {size!r}")
        out.append(item)
    return out
