"""Manifest builders and small assertions shared by the sandbox tests."""
from __future__ import annotations

import json

import pytest
from kubernetes.client import ApiException


def deployment(name="web", image="nginx:1.25", labels=None, replicas=None, containers=None, **spec):
    labels = labels or {"app": name}
    body = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": {
                "containers": containers or [{"name": name, "image": image, "ports": [{"containerPort": 8080}]}],
            }},
            **spec,
        },
    }
    if replicas is not None:
        body["spec"]["replicas"] = replicas
    return body


def service(name="web", ports=None, **spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": ports if ports is not None else [{"port": 80}], **spec}}


GROUP = "hoist.example.com"


def crd(plural="imagesources", kind="ImageSource", scope="Namespaced", status=True, schema=None, group=GROUP):
    spec_schema = schema or {
        "type": "object",
        "required": ["image"],
        "properties": {
            "image": {"type": "string", "minLength": 1},
            "digest": {"type": "string", "pattern": "^sha256:[a-f0-9]{64}$"},
            "binding": {"type": "string", "enum": ["track_latest", "pin_digest"], "default": "track_latest"},
            "replicas": {"type": "integer", "minimum": 0},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        },
    }
    version = {
        "name": "v1alpha1", "served": True, "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "spec": spec_schema,
            "status": {"type": "object", "properties": {
                "latestArtifact": {"type": "object", "properties": {
                    "image": {"type": "string"}, "digest": {"type": "string"},
                    "publishedAt": {"type": "string"}}},
                "phase": {"type": "string"}}},
        }}},
    }
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": scope,
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
                 "versions": [version]},
    }


def image_source(name="src", **spec):
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "ImageSource", "metadata": {"name": name},
            "spec": {"image": "registry.local/app", **spec}}


DIGEST = "sha256:" + "a" * 64


def api_error(call, *args, **kwargs) -> tuple:
    """Run a client call expected to fail; return (exception, parsed Status body)."""
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    return info.value, json.loads(info.value.body)


def raw(api_client, method, path, body=None, content_type="application/json", query=None):
    """Send a request through the real client's transport without its pydantic
    model checks (the v37 client rejects some invalid bodies client-side, while
    the server behaviour is what these tests are about). Returns (status, body)."""
    header_params = {"Accept": "application/json"}
    if body is not None:
        header_params["Content-Type"] = content_type
    method, url, headers, body, _ = api_client.param_serialize(
        method, path, query_params=list((query or {}).items()), header_params=header_params, body=body,
        auth_settings=["BearerToken"])
    resp = api_client.call_api(method, url, headers, body)
    resp.read()
    return resp.status, json.loads(resp.data) if resp.data else None
