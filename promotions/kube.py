"""The cluster client: the only module in Hoist that imports `kubernetes`.

It builds an ApiClient from a Cluster row, server-side-applies objects with
Hoist's field manager, reads objects (ImageSource above all), deletes what a
resource no longer needs, and maps every failure into ClusterError, which says
whether retrying can help.

Requests go through the official client's ApiClient (auth, TLS, pooling)
with paths built from a small table of the kinds Hoist writes, so one code
path serves built-in kinds and the ImageSource custom resource alike.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from environments.rules import check_kubeconfig

FIELD_MANAGER = "hoist"
CRD_PATH = Path(__file__).resolve().parent.parent / "deploy" / "crds" / "imagesources.hoist.dev.yaml"
IMAGESOURCE_API = "hoist.dev/v1alpha1"
CRD_REVISION_LABEL = "hoist.dev/crd-revision"
# Connect and read timeouts (seconds): a reconcile must fail fast and retry,
# not hold a worker on a dead API server.
TIMEOUT = (3.0, 15.0)


@dataclass(frozen=True)
class KindInfo:
    group_path: str  # "/api/v1" or "/apis/apps/v1"
    plural: str
    namespaced: bool = True


KINDS: dict[tuple[str, str], KindInfo] = {
    ("v1", "Namespace"): KindInfo("/api/v1", "namespaces", namespaced=False),
    ("v1", "Secret"): KindInfo("/api/v1", "secrets"),
    ("v1", "Service"): KindInfo("/api/v1", "services"),
    ("apps/v1", "Deployment"): KindInfo("/apis/apps/v1", "deployments"),
    ("networking.k8s.io/v1", "Ingress"): KindInfo("/apis/networking.k8s.io/v1", "ingresses"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): KindInfo(
        "/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False
    ),
    (IMAGESOURCE_API, "ImageSource"): KindInfo("/apis/hoist.dev/v1alpha1", "imagesources"),
}


class ClusterError(Exception):
    """A cluster refused or could not be reached. `retryable` says whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None, reason: str = "",
                 unreachable: bool = False):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status
        self.reason = reason
        self.unreachable = unreachable  # no answer at all: the whole cluster is down for now
        self.cluster_name = ""

    def __str__(self) -> str:
        return self.message


def _path(api_version: str, kind: str, namespace: str | None, name: str | None = None, subresource: str = "") -> str:
    try:
        info = KINDS[(api_version, kind)]
    except KeyError:
        raise ClusterError(f"Hoist does not write {kind} ({api_version})", retryable=False) from None
    path = info.group_path
    if info.namespaced:
        if namespace:
            path += f"/namespaces/{namespace}"
        elif name:
            raise ClusterError(f"{kind} needs a namespace", retryable=False)
        # else: a list or watch across all namespaces
    path += f"/{info.plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


# The CRD is checked once per process and cluster endpoint, not on every reconcile.
_crd_ready: set[str] = set()
_crd_lock = threading.Lock()
_clients: dict[tuple, "ClusterClient"] = {}
_clients_lock = threading.Lock()


def fingerprint(cluster) -> str:
    """Identifies how Hoist reaches a cluster: an edit in the admin (new URL, rotated token)
    changes it, so cached clients and the cluster's circuit breaker start afresh."""
    return hashlib.sha256(
        "\0".join([cluster.api_url, cluster.token, cluster.ca_cert, cluster.kubeconfig]).encode()
    ).hexdigest()


class ClusterClient:
    """One cluster's API. Build it with `ClusterClient.for_cluster(cluster)`."""

    def __init__(self, api_client: k8s.ApiClient, *, name: str, endpoint: str, keep: Any = None):
        self.api = api_client
        self.name = name
        self.endpoint = endpoint
        self._keep = keep  # temporary files (CA) that must live as long as the client

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def for_cluster(cls, cluster) -> "ClusterClient":
        """The process's client for `cluster`, reusing its connection pool.

        Keyed by the cluster's endpoint and credentials, so an edit in the
        admin (new URL, rotated token) gets a fresh client on the next call.
        """
        key = (cluster.pk, fingerprint(cluster))
        with _clients_lock:
            client_ = _clients.get(key)
            if client_ is None:
                for stale in [k for k in _clients if k[0] == cluster.pk]:
                    _clients.pop(stale).close()
                client_ = _clients[key] = cls._build(cluster)
            return client_

    @classmethod
    def _build(cls, cluster) -> "ClusterClient":
        if cluster.kubeconfig:
            return cls._from_kubeconfig(cluster)
        configuration = k8s.Configuration(host=cluster.api_url.rstrip("/"))
        # Fail fast; Hoist's reconcile retries with backoff and records each failure.
        configuration.retries = False
        keep = None
        if cluster.token:
            configuration.api_key = {"authorization": "Bearer " + cluster.token}
        if cluster.api_url.startswith("https://"):
            configuration.verify_ssl = True
            if cluster.ca_cert:
                keep = tempfile.NamedTemporaryFile("w", suffix=".crt", delete=False)
                keep.write(cluster.ca_cert)
                keep.close()
                configuration.ssl_ca_cert = keep.name
        return cls(k8s.ApiClient(configuration), name=cluster.name, endpoint=cluster.api_url, keep=keep)

    @classmethod
    def _from_kubeconfig(cls, cluster) -> "ClusterClient":
        try:
            check_kubeconfig(cluster.kubeconfig)  # rows saved before the check existed
            config_dict = yaml.safe_load(cluster.kubeconfig)
            api_client = k8s_config.new_client_from_config_dict(config_dict)
        except Exception as exc:  # the loader raises several types for a bad kubeconfig
            # Not the loader's text: it can quote the kubeconfig, token included.
            raise ClusterError(
                f"cluster {cluster.name}: the kubeconfig can't be used ({exc.__class__.__name__}); "
                "check it in the cluster's settings", retryable=False,
            ) from None
        api_client.configuration.retries = False
        return cls(api_client, name=cluster.name, endpoint=api_client.configuration.host)

    def close(self) -> None:
        self.api.close()
        if self._keep is not None:
            try:
                os.unlink(self._keep.name)
            except OSError:
                pass

    def __enter__(self) -> "ClusterClient":
        return self

    def __exit__(self, *exc) -> None:
        pass  # shared by the process (see for_cluster); closed by forget_clients()

    # --- the wire ----------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, query=None, body=None, content_type: str | None = None) -> dict | None:
        try:
            return self._send(method, path, query=query, body=body, content_type=content_type)
        except ClusterError as exc:
            exc.cluster_name = self.name
            raise

    def _call(self, method: str, path: str, *, query=None, headers: dict, body=None, timeout, read: bool):
        """One request through the ApiClient (auth, TLS, pooling); every failure as ClusterError.

        `read=False` leaves the body to stream (a watch); the status is the caller's to judge.
        """
        try:
            method_, url, header_params, body_, post = self.api.param_serialize(
                method=method, resource_path=path, query_params=list((query or {}).items()),
                header_params=headers, body=body, auth_settings=["BearerToken"],
            )
            response = self.api.call_api(method_, url, header_params=header_params, body=body_, post_params=post,
                                         _request_timeout=timeout)
            if read:
                response.read()
            return response
        except ApiException as exc:
            raise self._error(exc.status, exc.body, method, path) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterError(
                f"cluster {self.name} ({self.endpoint}) can't be reached: {exc.__class__.__name__}: {exc}",
                retryable=True, unreachable=True,
            ) from exc

    def _send(self, method: str, path: str, *, query=None, body=None, content_type: str | None = None) -> dict | None:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        response = self._call(method, path, query=query, headers=headers, body=body, timeout=TIMEOUT, read=True)
        if not 200 <= response.status <= 299:
            raise self._error(response.status, response.data, method, path)
        if not response.data:
            return None
        try:
            return json.loads(response.data)
        except ValueError as exc:
            raise ClusterError(f"cluster {self.name} answered {method} {path} with non-JSON", retryable=True) from exc

    def _error(self, status: int | None, body, method: str, path: str) -> ClusterError:
        message, reason, causes = "", "", []
        try:
            parsed = json.loads(body) if body else {}
            message, reason = parsed.get("message", ""), parsed.get("reason", "")
            causes = (parsed.get("details") or {}).get("causes") or []
        except (ValueError, TypeError, AttributeError):
            message = (body.decode(errors="replace") if isinstance(body, bytes) else str(body or ""))[:300]
        detail = "; ".join(f"{c.get('field', '')}: {c.get('message', '')}".strip(": ") for c in causes if isinstance(c, dict))
        text = f"cluster {self.name} refused {method} {path}: {status} {reason or ''} {message}".strip()
        if detail and detail not in text:
            text += f" ({detail})"
        # 409 is a write race (resourceVersion) and 429/5xx are the server's own
        # trouble: all worth another try. 4xx otherwise won't change by retrying.
        retryable = status is None or status == 0 or status in (408, 409, 429) or status >= 500
        return ClusterError(text, retryable=retryable, status=status, reason=reason)

    # --- operations ----------------------------------------------------------------------------

    def apply(self, obj: dict, *, subresource: str = "") -> dict:
        """Server-side apply `obj` as Hoist's field manager, taking over conflicting fields.

        Force is right here: Hoist owns these objects, and a person's edit to
        the image is exactly the drift the reconciler must put back.
        """
        metadata = obj["metadata"]
        path = _path(obj["apiVersion"], obj["kind"], metadata.get("namespace"), metadata["name"], subresource)
        # JSON is YAML, but YAML decoders refuse "\ud83d"-style surrogate escapes: characters
        # outside the BMP (an emoji in an env value) must travel as UTF-8, not escaped.
        body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        return self._request("PATCH", path, query={"fieldManager": FIELD_MANAGER, "force": "true"}, body=body,
                             content_type="application/apply-patch+yaml")

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict | None:
        try:
            return self._request("GET", _path(api_version, kind, namespace, name))
        except ClusterError as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete if present; True when something was deleted."""
        try:
            self._request("DELETE", _path(api_version, kind, namespace, name),
                          query={"propagationPolicy": "Background"})
            return True
        except ClusterError as exc:
            if exc.status == 404:
                return False
            raise

    def list(self, api_version: str, kind: str, namespace: str | None, label_selector: str = "") -> list[dict]:
        return self.list_versioned(api_version, kind, namespace, label_selector)[0]

    def list_versioned(self, api_version: str, kind: str, namespace: str | None,
                       label_selector: str = "") -> tuple[list[dict], str]:
        """The items and the list's resourceVersion (where a watch resumes from)."""
        query = {"labelSelector": label_selector} if label_selector else None
        result = self._request("GET", _path(api_version, kind, namespace), query=query) or {}
        return result.get("items", []), str((result.get("metadata") or {}).get("resourceVersion", ""))

    def watch(self, api_version: str, kind: str, namespace: str | None, *, label_selector: str = "",
              resource_version: str = "", timeout_s: int = 30, stop=None) -> Iterator[dict]:
        """Stream watch events ({"type", "object"}) from `resource_version`, with bookmarks.

        Ends when the server closes the stream (timeoutSeconds) or `stop()` is true.
        An `ERROR` event (e.g. 410 Gone: that resourceVersion is too old) is yielded
        as is; the caller relists. Connection failures raise ClusterError.
        """
        query = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_s)}
        if label_selector:
            query["labelSelector"] = label_selector
        if resource_version:
            query["resourceVersion"] = resource_version
        path = _path(api_version, kind, namespace)
        response = self._call("GET", path, query=query, headers={"Accept": "application/json"},
                              timeout=(TIMEOUT[0], timeout_s + 10), read=False)
        raw = response.response
        if not 200 <= response.status <= 299:
            raise self._error(response.status, raw.read(), "GET", path)
        pending = b""
        try:
            for chunk in raw.stream(16 * 1024, decode_content=True):
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
                    if stop is not None and stop():
                        return
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterError(f"cluster {self.name}: watch of {kind} broke off: {exc.__class__.__name__}",
                               retryable=True, unreachable=True) from exc
        finally:
            raw.close()  # a stream left early must not go back to the pool half-read

    def ensure_namespace(self, namespace: str, labels: dict[str, str]) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels}})

    def ensure_crd(self) -> None:
        """Install (or upgrade) the ImageSource CRD when the cluster lacks this revision (once per process and endpoint)."""
        if self.endpoint in _crd_ready:
            return
        with _crd_lock:
            if self.endpoint in _crd_ready:
                return
            crd = yaml.safe_load(CRD_PATH.read_text())
            stored = self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, crd["metadata"]["name"])
            revision = crd["metadata"]["labels"][CRD_REVISION_LABEL]
            if stored is None or (stored["metadata"].get("labels") or {}).get(CRD_REVISION_LABEL) != revision:
                # Missing, or an older revision whose schema would prune the fields added since.
                self.apply(crd)
            _crd_ready.add(self.endpoint)

    def reinstall_crd(self) -> None:
        """The cluster lost the CRD (it came back empty): install it again, even if we did before."""
        _crd_ready.discard(self.endpoint)
        self.ensure_crd()

    def read_image_source(self, namespace: str, name: str) -> dict | None:
        try:
            return self.get(IMAGESOURCE_API, "ImageSource", namespace, name)
        except ClusterError as exc:
            if exc.status == 404:  # the CRD itself is missing: nobody published here yet
                return None
            raise


def forget_crd_cache() -> None:
    """Forget which clusters have the CRD (tests that reset every sandbox at once)."""
    _crd_ready.clear()


def forget_clients() -> None:
    """Close every cached client (tests; a process shutting down)."""
    with _clients_lock:
        while _clients:
            _clients.popitem()[1].close()
