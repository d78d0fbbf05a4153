"""Discovery documents, health endpoints and unknown paths."""
import json
import urllib.error
import urllib.request

from kubernetes import client
from kubernetes.dynamic import DynamicClient

from .manifests import GROUP, crd, deployment


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read().decode()


def test_version_and_health(sandbox, kube_api_client):
    info = client.VersionApi(kube_api_client).get_code()
    assert info.major == "1" and info.git_version.startswith("v1.")
    for path in ("/healthz", "/readyz", "/livez"):
        assert _get(sandbox.url + path) == (200, "ok")


def test_core_resource_list(core):
    resources = {r.name: r for r in core.get_api_resources().resources}
    assert resources["namespaces"].namespaced is False
    assert resources["namespaces"].kind == "Namespace"
    for name in ("services", "secrets", "configmaps"):
        assert resources[name].namespaced is True
        assert set(resources[name].verbs) >= {"create", "get", "list", "watch", "patch", "update", "delete"}
    assert resources["services/status"].verbs == ["get", "patch", "update"]
    assert "secrets/status" not in resources


def test_group_discovery(kube_api_client, apps):
    groups = {g.name: g for g in client.ApisApi(kube_api_client).get_api_versions().groups}
    assert {"apps", "networking.k8s.io", "apiextensions.k8s.io"} <= set(groups)
    assert groups["apps"].preferred_version.group_version == "apps/v1"
    resources = {r.name: r for r in apps.get_api_resources().resources}
    assert resources["deployments"].kind == "Deployment"
    assert resources["deployments"].short_names == ["deploy"]
    assert "deployments/status" in resources
    group = client.AppsApi(kube_api_client).get_api_group()
    assert group.name == "apps"


def test_dynamic_client_discovers_builtins_and_crds(sandbox, kube_api_client, ext, tmp_path):
    dyn = DynamicClient(kube_api_client, cache_file=str(tmp_path / "discovery.json"))
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deployments.namespaced and deployments.name == "deployments"
    assert "status" in deployments.subresources
    created = deployments.create(body=deployment("dyn"), namespace="default")
    assert created.metadata.name == "dyn"

    ext.create_custom_resource_definition(crd())
    dyn = DynamicClient(kube_api_client, cache_file=str(tmp_path / "discovery2.json"))
    sources = dyn.resources.get(api_version=f"{GROUP}/v1alpha1", kind="ImageSource")
    assert sources.name == "imagesources" and sources.namespaced
    assert "status" in sources.subresources
    assert sources.get(namespace="default").items == []


def test_crd_group_appears_in_discovery(kube_api_client, ext):
    apis = client.ApisApi(kube_api_client)
    assert GROUP not in {g.name for g in apis.get_api_versions().groups}
    ext.create_custom_resource_definition(crd())
    assert GROUP in {g.name for g in apis.get_api_versions().groups}
    raw = kube_api_client.call_api(*kube_api_client.param_serialize("GET", f"/apis/{GROUP}/v1alpha1"))
    raw.read()
    doc = json.loads(raw.data)
    assert [r["name"] for r in doc["resources"]] == ["imagesources", "imagesources/status"]
    ext.delete_custom_resource_definition(f"imagesources.{GROUP}")
    assert GROUP not in {g.name for g in apis.get_api_versions().groups}


def test_unknown_paths_are_status_404(sandbox):
    for path in ("/apis/nope.example.com/v1", "/api/v1/widgets", "/apis/apps/v1/namespaces/default/widgets"):
        try:
            _get(sandbox.url + path)
        except urllib.error.HTTPError as err:
            body = json.loads(err.read())
            assert err.code == 404
            assert body["kind"] == "Status" and body["reason"] == "NotFound"
        else:
            raise AssertionError(f"{path} should be 404")


def test_dynamic_client_server_side_apply_and_patch(kube_api_client, tmp_path):
    dyn = DynamicClient(kube_api_client, cache_file=str(tmp_path / "discovery.json"))
    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"},
            "data": {"a": "1"}}
    applied = configmaps.server_side_apply(body=body, field_manager="dyn")
    assert applied.data.a == "1"
    patched = configmaps.patch(body={"metadata": {"name": "cfg"}, "data": {"b": "2"}}, namespace="default",
                               content_type="application/merge-patch+json")
    assert dict(patched.data) == {"a": "1", "b": "2"}
