"""JSON patch, merge patch and strategic merge patch through the real client."""
from .manifests import api_error, deployment, raw, service

JSON_PATCH = "application/json-patch+json"
MERGE = "application/merge-patch+json"


def _containers(dep):
    return {c.name: c for c in dep.spec.template.spec.containers}


def test_json_patch(apps, ns):
    apps.create_namespaced_deployment(ns, deployment())
    patched = apps.patch_namespaced_deployment("web", ns, [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:1.27"},
        {"op": "add", "path": "/metadata/labels/tier", "value": "front"},
        {"op": "test", "path": "/spec/replicas", "value": 1},
    ])
    assert patched.spec.template.spec.containers[0].image == "nginx:1.27"
    assert patched.metadata.labels == {"app": "web", "tier": "front"}


def test_json_patch_failures_are_422(apps, ns):
    apps.create_namespaced_deployment(ns, deployment())
    exc, status = api_error(apps.patch_namespaced_deployment, "web", ns,
                            [{"op": "test", "path": "/spec/replicas", "value": 7}])
    assert exc.status == 422 and status["reason"] == "Invalid"
    exc, status = api_error(apps.patch_namespaced_deployment, "web", ns,
                            [{"op": "remove", "path": "/spec/nothing"}])
    assert exc.status == 422
    exc, _ = api_error(apps.patch_namespaced_deployment, "missing", ns, [{"op": "remove", "path": "/spec"}])
    assert exc.status == 404


def test_merge_patch_replaces_lists_and_null_deletes(apps, ns):
    containers = [{"name": "web", "image": "nginx"}, {"name": "sidecar", "image": "busybox"}]
    apps.create_namespaced_deployment(ns, deployment(containers=containers, labels={"app": "web"}))
    patched = apps.patch_namespaced_deployment(
        "web", ns, {"metadata": {"labels": {"app": None, "x": "y"}},
                    "spec": {"template": {"spec": {"containers": [{"name": "only", "image": "alpine"}]}}}},
        _content_type=MERGE)
    assert patched.metadata.labels == {"x": "y"}
    assert list(_containers(patched)) == ["only"]


def test_strategic_merge_merges_containers_env_and_ports_by_key(apps, ns):
    containers = [
        {"name": "web", "image": "nginx", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
         "ports": [{"containerPort": 80, "name": "http"}]},
        {"name": "sidecar", "image": "busybox", "args": ["sleep", "1"]},
    ]
    apps.create_namespaced_deployment(ns, deployment(containers=containers))
    patched = apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "nginx:1.27",
         "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}, {"name": "A", "$patch": "delete"}],
         "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 9090}]},
        {"name": "new", "image": "redis"},
    ]}}}})
    by_name = _containers(patched)
    assert list(by_name) == ["web", "sidecar", "new"]
    web = by_name["web"]
    assert web.image == "nginx:1.27"
    assert [(e.name, e.value) for e in web.env] == [("B", "two"), ("C", "3")]
    assert [(p.container_port, p.name) for p in web.ports] == [(80, "web"), (9090, None)]
    assert by_name["sidecar"].args == ["sleep", "1"]  # untouched sibling keeps its fields
    assert by_name["new"].termination_message_path == "/dev/termination-log"  # defaults applied to new items


def test_strategic_merge_patch_directives(apps, ns):
    apps.create_namespaced_deployment(ns, deployment(containers=[
        {"name": "web", "image": "nginx"}, {"name": "sidecar", "image": "busybox"}]))
    patched = apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "$patch": "delete"}]}}}})
    assert list(_containers(patched)) == ["web"]
    patched = apps.patch_namespaced_deployment("web", ns, {"metadata": {"finalizers": ["a/b"]}})
    patched = apps.patch_namespaced_deployment("web", ns, {"metadata": {"finalizers": ["c/d"]}})
    assert patched.metadata.finalizers == ["a/b", "c/d"]  # primitive merge list: union
    patched = apps.patch_namespaced_deployment("web", ns, {"metadata": {"$deleteFromPrimitiveList/finalizers":
                                                                        ["a/b"]}})
    assert patched.metadata.finalizers == ["c/d"]


def test_strategic_merge_of_service_ports_by_port(core, ns):
    core.create_namespaced_service(ns, service(ports=[{"name": "http", "port": 80}, {"name": "metrics",
                                                                                       "port": 9100}]))
    patched = core.patch_namespaced_service("web", ns, {"spec": {"ports": [{"port": 80, "targetPort": 8080,
                                                                            "name": "http"}]}})
    assert [(p.port, p.target_port) for p in patched.spec.ports] == [(80, 8080), (9100, 9100)]


def test_patch_with_stale_resource_version_conflicts(apps, ns):
    created = apps.create_namespaced_deployment(ns, deployment())
    apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 2}})
    exc, status = api_error(apps.patch_namespaced_deployment, "web", ns,
                            {"metadata": {"resourceVersion": created.metadata.resource_version},
                             "spec": {"replicas": 3}}, _content_type=MERGE)
    assert exc.status == 409 and status["reason"] == "Conflict"


def test_patch_result_is_validated(apps, ns):
    apps.create_namespaced_deployment(ns, deployment())
    exc, status = api_error(apps.patch_namespaced_deployment, "web", ns, {"spec": {"replicas": -2}})
    assert exc.status == 422 and status["details"]["causes"][0]["field"] == "spec.replicas"


def test_unsupported_patch_content_type(kube_api_client, apps, ns):
    apps.create_namespaced_deployment(ns, deployment())
    code, status = raw(kube_api_client, "PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/web",
                       "<spec/>", content_type="application/xml")
    assert code == 415 and status["reason"] == "UnsupportedMediaType"
    assert status["message"].startswith("the body of the request was in an unknown format - accepted media types "
                                        "include: application/json-patch+json, application/merge-patch+json")
