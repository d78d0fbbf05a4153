"""Server-side apply: create/update, managedFields, conflicts, force, field removal."""
import copy

from .manifests import api_error, deployment, raw

APPLY = "application/apply-patch+yaml"


def _apply(apps, ns, body, manager, force=None, **kwargs):
    kwargs = dict(kwargs)
    if force is not None:
        kwargs["force"] = force
    return apps.patch_namespaced_deployment_with_http_info(
        body["metadata"]["name"], ns, body, field_manager=manager, _content_type=APPLY, **kwargs)


def _fields(obj, manager, operation="Apply"):
    for entry in obj.metadata.managed_fields:
        if entry.manager == manager and entry.operation == operation:
            return entry.fields_v1
    return None


def test_apply_creates_then_updates(apps, ns):
    data, code, _ = _apply(apps, ns, deployment(replicas=2), "hoist")
    assert code == 201 and data.spec.replicas == 2
    assert data.spec.revision_history_limit == 10  # defaults still apply
    fields = _fields(data, "hoist")
    assert fields["f:spec"]["f:replicas"] == {}
    assert "f:revisionHistoryLimit" not in fields["f:spec"]  # defaulted fields are not owned by the applier
    containers = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert containers['k:{"name":"web"}']["."] == {} and "f:image" in containers['k:{"name":"web"}']
    assert 'k:{"containerPort":8080,"protocol":"TCP"}' in containers['k:{"name":"web"}']["f:ports"]

    body = deployment(replicas=3, image="nginx:1.27")
    data, code, _ = _apply(apps, ns, body, "hoist")
    assert code == 200 and data.spec.replicas == 3
    assert data.spec.template.spec.containers[0].image == "nginx:1.27"
    assert data.metadata.generation == 2


def test_identical_apply_is_a_noop(apps, ns):
    first, _, _ = _apply(apps, ns, deployment(), "hoist")
    current = apps.read_namespaced_deployment("web", ns).metadata.resource_version
    again, code, _ = _apply(apps, ns, deployment(), "hoist")
    assert code == 200 and again.metadata.resource_version == current


def test_conflict_with_another_applier_and_force(apps, ns):
    _apply(apps, ns, deployment(replicas=2), "team-a")
    exc, status = api_error(_apply, apps, ns, deployment(replicas=5), "team-b")
    assert exc.status == 409 and status["reason"] == "Conflict"
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "team-a": .spec.replicas'
    assert status["details"]["causes"] == [{"reason": "FieldManagerConflict", "message": 'conflict with "team-a"',
                                            "field": ".spec.replicas"}]
    data, code, _ = _apply(apps, ns, deployment(replicas=5), "team-b", force=True)
    assert code == 200 and data.spec.replicas == 5
    assert "f:replicas" not in _fields(data, "team-a")["f:spec"]
    assert "f:replicas" in _fields(data, "team-b")["f:spec"]


def test_same_value_is_shared_not_a_conflict(apps, ns):
    _apply(apps, ns, deployment(replicas=2), "team-a")
    data, code, _ = _apply(apps, ns, deployment(replicas=2), "team-b")
    assert code == 200
    assert "f:replicas" in _fields(data, "team-a")["f:spec"] and "f:replicas" in _fields(data, "team-b")["f:spec"]


def test_conflict_with_update_manager_lists_all_fields(apps, ns):
    _apply(apps, ns, deployment(replicas=2), "hoist")
    apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 4, "minReadySeconds": 5}},
                                     field_manager="kubectl-edit")
    body = deployment(replicas=2, minReadySeconds=0)
    exc, status = api_error(_apply, apps, ns, body, "hoist")
    assert exc.status == 409
    assert status["message"].startswith('Apply failed with 2 conflicts: conflicts with "kubectl-edit" using apps/v1')
    assert {c["field"] for c in status["details"]["causes"]} == {".spec.replicas", ".spec.minReadySeconds"}


def test_fields_dropped_from_apply_are_removed(apps, ns):
    body = deployment(labels={"app": "web"}, replicas=3)
    body["metadata"]["labels"]["tier"] = "front"
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"},
                                                                {"name": "B", "value": "2"}]
    body["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    _apply(apps, ns, body, "hoist")
    # Another manager owns a label of its own: it must survive.
    apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"owner": "ops"}}}, field_manager="ops")

    slim = copy.deepcopy(body)
    del slim["metadata"]["labels"]["tier"]
    del slim["spec"]["replicas"]
    slim["spec"]["template"]["spec"]["containers"] = [dict(body["spec"]["template"]["spec"]["containers"][0],
                                                           env=[{"name": "A", "value": "1"}])]
    data, _, _ = _apply(apps, ns, slim, "hoist")
    assert data.metadata.labels == {"app": "web", "owner": "ops"}
    assert [c.name for c in data.spec.template.spec.containers] == ["web"]
    assert [e.name for e in data.spec.template.spec.containers[0].env] == ["A"]
    assert data.spec.replicas == 1  # removed, then defaulted again like the real server


def test_apply_requires_field_manager_and_known_fields(kube_api_client, apps, ns):
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/web"
    code, status = raw(kube_api_client, "PATCH", path, deployment(), content_type=APPLY)
    assert code == 422 and "fieldManager: Required value" in status["message"]
    body = deployment()
    body["spec"]["replica"] = 2
    code, status = raw(kube_api_client, "PATCH", path, body, content_type=APPLY, query={"fieldManager": "x"})
    assert code == 400 and status["reason"] == "BadRequest"
    assert status["message"] == (f"failed to create typed patch object ({ns}/web; apps/v1, Kind=Deployment): "
                                 ".spec.replica: field not declared in schema")


def test_apply_accepts_yaml_text(kube_api_client, ns):
    manifest = f"""
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: {ns}
data:
  key: value
"""
    code, body = raw(kube_api_client, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/cfg", manifest,
                     content_type=APPLY, query={"fieldManager": "yaml"})
    assert code == 201 and body["data"] == {"key": "value"}


def test_apply_validates_like_create(apps, ns):
    exc, status = api_error(_apply, apps, ns, deployment(replicas=-1), "hoist")
    assert exc.status == 422 and status["details"]["causes"][0]["field"] == "spec.replicas"


def test_apply_then_update_ownership_moves(apps, ns):
    _apply(apps, ns, deployment(image="nginx:1"), "hoist")
    live = apps.read_namespaced_deployment("web", ns)
    live.spec.template.spec.containers[0].image = "nginx:2"
    updated = apps.replace_namespaced_deployment("web", ns, live, field_manager="hand")
    hand = _fields(updated, "hand", "Update")
    assert "f:image" in hand["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    hoist = _fields(updated, "hoist")
    assert "f:image" not in hoist["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']


def test_secret_string_data_through_apply_behaves_like_a_real_cluster(core, ns):
    import base64

    def apply(string_data):
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "env", "namespace": ns},
                "stringData": string_data}
        core.patch_namespaced_secret("env", ns, body, field_manager="hoist", _content_type=APPLY)
        return core.read_namespaced_secret("env", ns)

    secret = apply({"A": "1", "B": "2"})
    assert {k: base64.b64decode(v).decode() for k, v in secret.data.items()} == {"A": "1", "B": "2"}
    assert secret.string_data is None
    # Known apiserver quirk: stringData is write-only, so a key dropped from it stays in data.
    assert set(apply({"A": "1"}).data) == {"A", "B"}


def test_apply_refuses_surrogate_escapes_as_a_real_apiserver_does(sandbox):
    """go-yaml rejects "\\ud83d\\ude00" in an apply-patch+yaml body; the same text as UTF-8 is fine."""
    import json

    import httpx

    cm = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
          "stringData": {"GREETING": "hi 😀"}}
    url = f"{sandbox.url}/api/v1/namespaces/default/secrets/s?fieldManager=t"
    headers = {"Content-Type": "application/apply-patch+yaml"}
    escaped = httpx.patch(url, content=json.dumps(cm).encode(), headers=headers)
    assert escaped.status_code == 400 and "invalid Unicode character escape code" in escaped.json()["message"]
    utf8 = httpx.patch(url, content=json.dumps(cm, ensure_ascii=False).encode(), headers=headers)
    assert utf8.status_code in (200, 201), utf8.text
