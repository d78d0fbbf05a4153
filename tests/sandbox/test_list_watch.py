"""Label/field selectors, pagination and watch."""
import collections
import threading
import time

import pytest
from kubernetes import client, watch

from .manifests import api_error, deployment


@pytest.fixture
def labelled(core, ns):
    for name, labels in [("a", {"app": "web", "tier": "front"}), ("b", {"app": "web", "tier": "back"}),
                         ("c", {"app": "db"}), ("d", {})]:
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": labels}})
    return ns


@pytest.mark.parametrize("selector,expected", [
    ("app=web", "ab"), ("app==web", "ab"), ("app!=web", "cd"), ("tier", "ab"), ("!tier", "cd"),
    ("app in (web,db)", "abc"), ("tier notin (front)", "bcd"), ("app=web,tier=back", "b"),
    ("app in (web), !missing", "ab"), ("", "abcd"),
])
def test_label_selectors(core, labelled, selector, expected):
    items = core.list_namespaced_config_map(labelled, label_selector=selector).items
    assert "".join(i.metadata.name for i in items) == expected


def test_field_selectors(core, labelled):
    assert [i.metadata.name for i in
            core.list_namespaced_config_map(labelled, field_selector="metadata.name=c").items] == ["c"]
    assert len(core.list_namespaced_config_map(labelled, field_selector="metadata.name!=c").items) == 3
    exc, status = api_error(core.list_namespaced_config_map, labelled, field_selector="data.x=1")
    assert exc.status == 400 and status["message"] == "field label not supported: data.x"
    exc, _ = api_error(core.list_namespaced_config_map, labelled, label_selector="app in web")
    assert exc.status == 400


def test_pagination(core, labelled):
    first = core.list_namespaced_config_map(labelled, limit=3)
    assert [i.metadata.name for i in first.items] == ["a", "b", "c"]
    assert first.metadata.remaining_item_count == 1 and first.metadata._continue
    rest = core.list_namespaced_config_map(labelled, limit=3, _continue=first.metadata._continue)
    assert [i.metadata.name for i in rest.items] == ["d"] and not rest.metadata._continue


def _collect(func, seconds, **kwargs):
    """Run a Watch in a thread; returns (events list, thread)."""
    events = []
    started = threading.Event()

    def run():
        w = watch.Watch()
        started.set()
        for ev in w.stream(func, timeout_seconds=seconds, **kwargs):
            events.append((ev["type"], ev["object"].metadata.name, ev["object"]))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait()
    return events, thread


def test_watch_streams_events_and_honours_timeout(apps, ns):
    apps.create_namespaced_deployment(ns, deployment("existing"))
    listed = apps.list_namespaced_deployment(ns)
    t0 = time.monotonic()
    events, thread = _collect(apps.list_namespaced_deployment, 1, namespace=ns,
                              resource_version=listed.metadata.resource_version)
    time.sleep(0.2)
    apps.create_namespaced_deployment(ns, deployment("web"))
    apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 2}})
    apps.delete_namespaced_deployment("web", ns)
    thread.join(5)
    elapsed = time.monotonic() - t0
    assert not thread.is_alive() and 0.9 <= elapsed < 3
    kinds = [(t, name) for t, name, _ in events]
    # ADDED, then MODIFIED by the controller's status write and by the patch, then DELETED.
    assert kinds[0] == ("ADDED", "web") and kinds[-1] == ("DELETED", "web")
    assert {t for t, _ in kinds[1:-1]} == {"MODIFIED"}
    assert ("existing" not in {name for _, name in kinds})  # started from the list's resourceVersion
    versions = [int(obj.metadata.resource_version) for _, _, obj in events]
    assert versions == sorted(versions)
    assert events[0][2].kind == "Deployment"


def test_watch_without_resource_version_starts_with_current_state(core, labelled):
    w = watch.Watch()
    seen = [(e["type"], e["object"].metadata.name)
            for e in w.stream(core.list_namespaced_config_map, namespace=labelled, label_selector="app=web",
                              timeout_seconds=1)]
    assert seen == [("ADDED", "a"), ("ADDED", "b")]


def test_watch_label_selector_transitions(core, ns):
    core.create_namespaced_config_map(ns, {"metadata": {"name": "x", "labels": {"app": "web"}}})
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    events, thread = _collect(core.list_namespaced_config_map, 1, namespace=ns, label_selector="app=web",
                              resource_version=rv)
    time.sleep(0.1)
    core.patch_namespaced_config_map("x", ns, {"metadata": {"labels": {"app": "db"}}})  # leaves the selection
    core.patch_namespaced_config_map("x", ns, {"metadata": {"labels": {"app": "web"}}})  # comes back
    core.create_namespaced_config_map(ns, {"metadata": {"name": "other", "labels": {"app": "db"}}})
    thread.join(5)
    assert [(t, n) for t, n, _ in events] == [("DELETED", "x"), ("ADDED", "x")]


def test_watch_custom_objects_and_other_namespaces_are_filtered(custom, ext, core, ns):
    from .manifests import GROUP, crd, image_source

    ext.create_custom_resource_definition(crd())
    events = []

    def run():
        for ev in watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, "v1alpha1", ns,
                                       "imagesources", timeout_seconds=1):
            events.append((ev["type"], ev["object"]["metadata"]["name"]))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.2)
    custom.create_namespaced_custom_object(GROUP, "v1alpha1", "default", "imagesources", image_source("elsewhere"))
    custom.create_namespaced_custom_object(GROUP, "v1alpha1", ns, "imagesources", image_source("mine"))
    thread.join(5)
    assert events == [("ADDED", "mine")]


def test_watch_too_old_resource_version_is_410(sandbox_factory):
    server = sandbox_factory()
    server.api.store.events = collections.deque(maxlen=2)  # tiny history to force compaction
    core = client.CoreV1Api(client.ApiClient(server.configuration()))
    old = core.list_namespaced_config_map("default").metadata.resource_version
    for i in range(4):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
    with pytest.raises(client.ApiException) as info:
        list(watch.Watch().stream(core.list_namespaced_config_map, namespace="default", resource_version=old,
                                  timeout_seconds=1))
    assert info.value.status == 410 and "too old resource version" in info.value.reason


def test_resource_versions_survive_reset_and_old_watches_get_410(sandbox, core):
    before = core.list_namespaced_config_map("default").metadata.resource_version
    sandbox.reset()
    after = core.list_namespaced_config_map("default").metadata.resource_version
    assert int(after) > int(before)  # never reused
    with pytest.raises(client.ApiException) as info:
        list(watch.Watch().stream(core.list_namespaced_config_map, namespace="default", resource_version=before,
                                  timeout_seconds=1))
    assert info.value.status == 410


def test_a_watch_with_bookmarks_gets_one_before_it_times_out(sandbox):
    import json

    import httpx

    listed = httpx.get(f"{sandbox.url}/api/v1/namespaces/default/secrets").json()["metadata"]["resourceVersion"]
    with httpx.stream("GET", f"{sandbox.url}/api/v1/namespaces/default/secrets",
                      params={"watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": "1",
                              "resourceVersion": listed}, timeout=10) as response:
        events = [json.loads(line) for line in response.iter_lines() if line]
    assert events[-1]["type"] == "BOOKMARK" and int(events[-1]["object"]["metadata"]["resourceVersion"]) >= int(listed)
