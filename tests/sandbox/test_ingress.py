"""networking.k8s.io/v1 ingresses."""
from .manifests import api_error, raw


def ingress(host="app.example.com", path="/", path_type="Prefix", port=None):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
            "spec": {"rules": [{"host": host, "http": {"paths": [{
                "path": path, "pathType": path_type,
                "backend": {"service": {"name": "web", "port": port or {"number": 80}}}}]}}]}}


def test_ingress_crud_and_generation(net, ns):
    created = net.create_namespaced_ingress(ns, ingress())
    assert created.metadata.generation == 1 and created.status.load_balancer is not None
    patched = net.patch_namespaced_ingress("web", ns, {"spec": {"rules": [{"host": "new.example.com", "http": {
        "paths": [{"path": "/", "pathType": "Exact", "backend": {"service": {"name": "web",
                                                                             "port": {"name": "http"}}}}]}}]}})
    assert patched.spec.rules[0].host == "new.example.com" and patched.metadata.generation == 2
    assert [i.metadata.name for i in net.list_namespaced_ingress(ns).items] == ["web"]
    net.delete_namespaced_ingress("web", ns)
    exc, status = api_error(net.read_namespaced_ingress, "web", ns)
    assert status["message"] == 'ingresses.networking.k8s.io "web" not found'


def test_ingress_validation(kube_api_client, net, ns):
    exc, status = api_error(net.create_namespaced_ingress, ns, ingress(host="Not_A_Host", path="relative"))
    assert exc.status == 422
    fields = {c["field"] for c in status["details"]["causes"]}
    assert fields == {"spec.rules[0].host", "spec.rules[0].http.paths[0].path"}
    body = ingress()
    del body["spec"]["rules"][0]["http"]["paths"][0]["pathType"]
    code, status = raw(kube_api_client, "POST", f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses", body)
    assert code == 422
    assert status["details"]["causes"] == [{"reason": "FieldValueRequired",
                                            "message": "Required value: pathType must be specified",
                                            "field": "spec.rules[0].http.paths[0].pathType"}]
    exc, status = api_error(net.create_namespaced_ingress, ns, ingress(port={"number": 80, "name": "http"}))
    assert "cannot set both port name & port number" in status["message"]
    assert net.create_namespaced_ingress(ns, ingress(host="*.example.com")).spec.rules[0].host == "*.example.com"
