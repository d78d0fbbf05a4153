"""Bearer-token auth, fault switches (Python and HTTP admin API), reset, factory."""
import json
import time
import urllib.error
import urllib.request

import pytest
import urllib3
from kubernetes import client

from .manifests import api_error


def _core(server, retries=None, token=None):
    config = client.Configuration(host=server.url)
    if token is not None:
        config.api_key = {"authorization": f"Bearer {token}"}
    if retries is not None:
        config.retries = retries
    return client.CoreV1Api(client.ApiClient(config))


def _admin(server, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.url + path, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_bearer_token_required(sandbox_factory):
    server = sandbox_factory(token="s3cret")
    exc, status = api_error(_core(server).list_namespace)
    assert exc.status == 401
    assert status == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    exc, _ = api_error(_core(server, token="wrong").list_namespace)
    assert exc.status == 401
    assert "default" in {n.metadata.name for n in _core(server, token="s3cret").list_namespace().items}
    with urllib.request.urlopen(server.url + "/healthz", timeout=5) as resp:  # anonymous, like the real one
        assert resp.status == 200


def test_refuse_connections_and_restore(sandbox, core):
    port = sandbox.port
    core.list_namespace()  # warm a pooled keep-alive connection: it must be dropped too
    sandbox.faults.refuse_connections(True)
    with pytest.raises(urllib3.exceptions.MaxRetryError) as info:
        _core(sandbox, retries=0).list_namespace()
    assert isinstance(info.value.reason, urllib3.exceptions.NewConnectionError)
    with pytest.raises(urllib3.exceptions.HTTPError):
        core.list_namespace()
    sandbox.faults.refuse_connections(False)
    assert sandbox.port == port
    assert core.list_namespace().items


def test_refuse_connections_for_a_while_over_http(sandbox, core):
    state = _admin(sandbox, "/_sandbox/faults", {"refuse_connections": True, "seconds": 0.5})
    assert state["refuse_connections"] is True
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        _core(sandbox, retries=0).list_namespace()
    time.sleep(0.7)
    assert core.list_namespace().items
    with pytest.raises(urllib.error.HTTPError) as info:  # without a duration nobody could switch it back
        _admin(sandbox, "/_sandbox/faults", {"refuse_connections": True})
    assert info.value.code == 400


def test_fail_next_500_then_recovers(sandbox, core):
    sandbox.faults.fail_next(2, status=500)
    for _ in range(2):
        exc, status = api_error(core.create_namespaced_config_map, "default", {"metadata": {"name": "c"}})
        assert exc.status == 500 and status["reason"] == "InternalError"
    assert core.create_namespaced_config_map("default", {"metadata": {"name": "c"}}).metadata.name == "c"


def test_fail_next_429_filters_by_method_and_path(sandbox, core):
    sandbox.faults.fail_next(1, status=429, method="POST", path_prefix="/api/v1/namespaces/default/secrets",
                             retry_after=2)
    core.create_namespaced_config_map("default", {"metadata": {"name": "not-matched"}})
    exc, status = api_error(core.create_namespaced_secret, "default", {"metadata": {"name": "s"}})
    assert exc.status == 429 and status["reason"] == "TooManyRequests"
    assert exc.headers["Retry-After"] == "2" and status["details"]["retryAfterSeconds"] == 2
    core.create_namespaced_secret("default", {"metadata": {"name": "s"}})


def test_urllib3_retries_idempotent_429s_itself(sandbox, core):
    # Documented client behaviour: GETs answered 429 + Retry-After are retried by urllib3.
    sandbox.faults.fail_next(2, status=429, method="GET", retry_after=0)
    assert core.read_namespace("default").metadata.name == "default"
    assert [r["status"] for r in sandbox.requests][-3:] == [429, 429, 200]


def test_delay(sandbox, core):
    sandbox.faults.delay(0.3)
    t0 = time.monotonic()
    core.read_namespace("default")
    assert time.monotonic() - t0 >= 0.3
    with pytest.raises(urllib3.exceptions.HTTPError):
        _core(sandbox, retries=0).read_namespace("default", _request_timeout=0.1)
    sandbox.faults.delay(0)
    t0 = time.monotonic()
    core.read_namespace("default")
    assert time.monotonic() - t0 < 0.3


def test_faults_over_http_admin_api(sandbox, core):
    state = _admin(sandbox, "/_sandbox/faults", {"fail_next": {"n": 1, "status": 503, "method": "GET"}})
    assert state["fail_next"][0]["status"] == 503
    exc, status = api_error(_core(sandbox, retries=0).read_namespace, "default")
    assert exc.status == 503 and status["reason"] == "ServiceUnavailable"
    _admin(sandbox, "/_sandbox/faults", {"delay": 0.2, "hold_rollouts": True})
    assert _admin(sandbox, "/_sandbox/faults")["delay"] == 0.2
    _admin(sandbox, "/_sandbox/faults", {"clear": True})
    assert _admin(sandbox, "/_sandbox/faults") == {"refuse_connections": False, "delay": 0.0, "delay_method": None,
                                                   "delay_path_prefix": None, "fail_next": [],
                                                   "hold_rollouts": False, "rollout_seconds": 0.0,
                                                   "fail_images": []}


def test_reset_over_http_clears_everything(sandbox, core, ext):
    from .manifests import crd

    core.create_namespace({"metadata": {"name": "temp"}})
    ext.create_custom_resource_definition(crd())
    sandbox.faults.fail_next(5, path_prefix="/nothing")
    assert _admin(sandbox, "/_sandbox/reset", {}) == {"status": "reset"}
    assert sandbox.get_object("v1", "namespaces", None, "temp") is None
    assert sandbox.get_object("apiextensions.k8s.io/v1", "customresourcedefinitions", None,
                              "imagesources.hoist.example.com") is None
    assert sandbox.faults.state()["fail_next"] == []
    requests = _admin(sandbox, "/_sandbox/requests")["requests"]
    assert requests == []


def test_servers_from_factory_are_independent(sandbox, sandbox_factory):
    other = sandbox_factory()
    assert other.port != sandbox.port
    _core(other).create_namespace({"metadata": {"name": "only-there"}})
    assert other.get_object("v1", "namespaces", None, "only-there")["metadata"]["name"] == "only-there"
    assert sandbox.get_object("v1", "namespaces", None, "only-there") is None


def test_python_helpers(sandbox):
    created = sandbox.create_object({"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "seed", "namespace": "default"}, "data": {"a": "b"}})
    assert created["metadata"]["resourceVersion"]
    assert sandbox.get_object("v1", "configmaps", "default", "seed")["data"] == {"a": "b"}
    assert [o["metadata"]["name"] for o in sandbox.list_objects("v1", "configmaps")] == ["seed"]
    with sandbox.__class__() as temporary:
        assert temporary.url.startswith("http://127.0.0.1:")
        assert _core(temporary).read_namespace("default")
