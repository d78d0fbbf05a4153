"""Registry of served resource types and the discovery documents built from it.

Built-in types are fixed; custom types appear when a CRD is stored and vanish
when it is deleted. Storage is keyed by (group, plural) so every served
version of a CRD sees the same objects (conversion strategy "None").
"""
from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field

from . import schema

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: list = field(default_factory=list)
    categories: list = field(default_factory=list)
    status_subresource: bool = True
    has_generation: bool = False
    allow_unconditional_update: bool = True
    return_deleted_object: bool = False  # DELETE answers with the object instead of a Status
    definition: str | None = None  # built-in OpenAPI definition name
    crd_name: str | None = None  # set for custom resources
    crd_schema: dict | None = None  # openAPIV3Schema of this version

    @property
    def builtin(self) -> bool:
        return self.crd_name is None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def group_resource(self) -> str:
        """'deployments.apps' / 'services' as used in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def store_key(self) -> tuple:
        return (self.group, self.plural)

    def root_node(self):
        if self.builtin:
            return schema.builtin(self.definition)
        return schema.CrdRoot(self.crd_schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True})

    def discovery(self) -> list:
        """APIResource entries for this type and its subresources."""
        entry = {
            "name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
            "kind": self.kind, "verbs": ALL_VERBS,
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        digest = hashlib.sha256(f"{self.api_version}/{self.kind}".encode()).digest()
        entry["storageVersionHash"] = base64.b64encode(digest[:8]).decode()
        out = [entry]
        if self.status_subresource:
            out.append({"name": f"{self.plural}/status", "singularName": "", "namespaced": self.namespaced,
                        "kind": self.kind, "verbs": ["get", "patch", "update"]})
        return out


def _builtin_types() -> list:
    return [
        ResourceType("", "v1", "Namespace", "namespaces", "namespace", False, ["ns"],
                     definition="io.k8s.api.core.v1.Namespace"),
        ResourceType("", "v1", "Service", "services", "service", True, ["svc"], ["all"],
                     return_deleted_object=True, definition="io.k8s.api.core.v1.Service"),
        ResourceType("", "v1", "Secret", "secrets", "secret", True, status_subresource=False,
                     definition="io.k8s.api.core.v1.Secret"),
        ResourceType("", "v1", "ConfigMap", "configmaps", "configmap", True, ["cm"], status_subresource=False,
                     definition="io.k8s.api.core.v1.ConfigMap"),
        ResourceType("apps", "v1", "Deployment", "deployments", "deployment", True, ["deploy"], ["all"],
                     has_generation=True, definition="io.k8s.api.apps.v1.Deployment"),
        ResourceType("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", True, ["ing"],
                     has_generation=True, definition="io.k8s.api.networking.v1.Ingress"),
        ResourceType("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
                     "customresourcedefinition", False, ["crd", "crds"], has_generation=True,
                     definition="io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"),
    ]


_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str):
    """Kube-aware version ordering: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > other."""
    m = _VERSION_RE.match(version)
    if not m:
        return (0, 0, 0, version)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 3, "beta": 2, "alpha": 1}[stage]
    return (rank, major, minor, "")


class Registry:
    def __init__(self):
        self.builtins = {(rt.group, rt.version, rt.plural): rt for rt in _builtin_types()}
        self.custom: dict = {}  # crd name -> {version: ResourceType}

    def reset(self):
        self.custom.clear()

    def lookup(self, group: str, version: str, plural: str):
        rt = self.builtins.get((group, version, plural))
        if rt:
            return rt
        for versions in self.custom.values():
            rt = versions.get(version)
            if rt and rt.group == group and rt.plural == plural:
                return rt
        return None

    def by_store_key(self, key):
        for rt in self.builtins.values():
            if rt.store_key == key:
                return rt
        for versions in self.custom.values():
            for rt in versions.values():
                if rt.store_key == key:
                    return rt
        return None

    def all_types(self) -> list:
        out = list(self.builtins.values())
        for versions in self.custom.values():
            out.extend(versions.values())
        return out

    # -- CRDs ----------------------------------------------------------------
    def register_crd(self, crd: dict):
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        subresources_of = {}
        versions = {}
        for v in spec.get("versions", []):
            if not v.get("served", True):
                continue
            subresources_of[v["name"]] = v.get("subresources") or {}
            versions[v["name"]] = ResourceType(
                group=spec["group"], version=v["name"], kind=names["kind"], plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=list(names.get("shortNames") or []), categories=list(names.get("categories") or []),
                status_subresource="status" in subresources_of[v["name"]],
                has_generation=True, allow_unconditional_update=False,
                crd_name=crd["metadata"]["name"],
                crd_schema=(v.get("schema") or {}).get("openAPIV3Schema"),
            )
        self.custom[crd["metadata"]["name"]] = versions

    def unregister_crd(self, name: str):
        self.custom.pop(name, None)

    # -- discovery documents -------------------------------------------------
    def groups(self) -> dict:
        """group -> ordered list of versions (preferred first)."""
        out: dict = {}
        for rt in self.all_types():
            if rt.group:
                out.setdefault(rt.group, set()).add(rt.version)
        return {g: sorted(vs, key=version_priority, reverse=True) for g, vs in out.items()}

    def api_group(self, group: str):
        versions = self.groups().get(group)
        if not versions:
            return None
        vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": vs, "preferredVersion": vs[0]}

    def api_group_list(self) -> dict:
        groups = [self.api_group(g) for g in self.groups()]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def resource_list(self, group: str, version: str):
        types = [rt for rt in self.all_types() if rt.group == group and rt.version == version]
        if not types:
            return None
        resources = []
        for rt in sorted(types, key=lambda t: t.plural):
            resources.extend(rt.discovery())
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}
