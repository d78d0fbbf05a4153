"""Timed rollouts (`rollout_seconds`) and failing images (`fail_images`) of the fake deployment controller."""
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
import urllib3
from kubernetes import watch

from sandbox import schema, validation

from .manifests import deployment

DIGEST = "sha256:" + "d" * 64
OTHER = "sha256:" + "e" * 64
REVISION = "deployment.kubernetes.io/revision"


def _admin(server, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.url + path, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _admin_error(server, body):
    with pytest.raises(urllib.error.HTTPError) as info:
        _admin(server, "/_sandbox/faults", body)
    return info.value.code, json.loads(info.value.read())["error"]


class Watcher:
    """Collect raw watch events (type, object dict, receipt time) for one namespace in a thread."""

    def __init__(self, apps, ns, resource_version, seconds=15):
        self.events = []
        self._lock = threading.Lock()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(apps, ns, resource_version, seconds), daemon=True)
        self._thread.start()

    def _run(self, apps, ns, rv, seconds):
        try:
            for ev in self._watch.stream(apps.list_namespaced_deployment, ns, resource_version=rv,
                                         timeout_seconds=seconds):
                with self._lock:
                    self.events.append((ev["type"], ev["raw_object"], time.monotonic()))
        except urllib3.exceptions.ProtocolError:
            pass  # the next test's reset ends the stream

    def wait_for(self, predicate, timeout=10.0):
        """Block until an event's object satisfies predicate; return (object, receipt time)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            with self._lock:
                fresh = self.events[seen:]
                seen += len(fresh)
            for _, obj, at in fresh:
                if predicate(obj):
                    return obj, at
            time.sleep(0.01)
        raise AssertionError(f"no matching watch event within {timeout}s; statuses: {self.statuses()}")

    def objects(self):
        with self._lock:
            return [obj for _, obj, _ in self.events]

    def statuses(self):
        return [obj.get("status") for obj in self.objects()]

    def stop(self):
        self._watch.stop()


def _conditions(obj):
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def _progress(obj):
    return (_conditions(obj).get("Progressing") or {}).get("reason")


def _assert_valid(sandbox, obj):
    """What the controller writes must be a valid Deployment with only real DeploymentStatus fields."""
    rt = sandbox.api.registry.lookup("apps", "v1", "deployments")
    assert schema.find_unknown(obj, rt.root_node()) == []
    assert validation.validate_builtin(rt, obj, None) == []
    assert set(obj.get("status") or {}) <= {"observedGeneration", "replicas", "updatedReplicas", "readyReplicas",
                                            "availableReplicas", "unavailableReplicas", "conditions"}


def _rv(obj):
    return int(obj["metadata"]["resourceVersion"])


@pytest.fixture
def watcher(apps, ns):
    made = []

    def make(resource_version):
        w = Watcher(apps, ns, resource_version)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()


def test_rollout_steps_are_visible_through_a_watch(sandbox, apps, ns, watcher):
    # Steps 0.5 s apart: a step is skipped only if the scheduler wakes that late (a busy CI machine can).
    assert _admin(sandbox, "/_sandbox/faults", {"rollout_seconds": 1.5})["rollout_seconds"] == 1.5
    t0 = time.monotonic()
    created = apps.create_namespaced_deployment(ns, deployment(replicas=3))
    w = watcher(created.metadata.resource_version)
    done, done_at = w.wait_for(lambda o: _progress(o) == "NewReplicaSetAvailable")
    assert done_at - t0 >= 1.5  # never before rollout_seconds
    statuses = [o for o in w.objects() if o.get("status")]
    assert statuses[-1] is done
    for obj in statuses:
        _assert_valid(sandbox, obj)
        assert obj["status"]["observedGeneration"] == 1  # right away
    rvs = [_rv(o) for o in w.objects()]
    assert rvs == sorted(set(rvs))  # every step is its own write
    updated = [o["status"].get("updatedReplicas", 0) for o in statuses]
    assert updated[0] == 0 and updated[-1] == 3 and updated == sorted(set(updated))
    intermediate = statuses[:-1]
    assert len(intermediate) >= 2
    rs = 'ReplicaSet "web-'
    for obj in intermediate:
        st, cond = obj["status"], _conditions(obj)
        assert cond["Progressing"]["status"] == "True" and cond["Progressing"]["reason"] == "ReplicaSetUpdated"
        assert cond["Progressing"]["message"].startswith(rs) and cond["Progressing"]["message"].endswith(
            '" is progressing.')
        n = st.get("updatedReplicas", 0)
        assert st.get("replicas", 0) == st.get("availableReplicas", 0) == st.get("readyReplicas", 0) == n
        assert st["unavailableReplicas"] == 3 - n
        # maxUnavailable 25% of 3 rounds down to 0, and a new deployment has no old pods.
        assert cond["Available"]["status"] == "False" and cond["Available"]["reason"] == "MinimumReplicasUnavailable"
    st, cond = done["status"], _conditions(done)
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"], st["availableReplicas"]) == (3, 3, 3, 3)
    assert "unavailableReplicas" not in st
    assert cond["Available"]["status"] == "True" and cond["Available"]["reason"] == "MinimumReplicasAvailable"
    assert cond["Progressing"]["status"] == "True"
    first_rs = cond["Progressing"]["message"].split('"')[1]
    assert cond["Progressing"]["message"] == f'ReplicaSet "{first_rs}" has successfully progressed.'
    assert done["metadata"]["annotations"][REVISION] == "1"

    # A new template: a rolling update keeps the old pods available while new ones come up.
    w2 = watcher(done["metadata"]["resourceVersion"])
    apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}})
    done2, _ = w2.wait_for(lambda o: o["metadata"]["annotations"].get(REVISION) == "2"
                           and _progress(o) == "NewReplicaSetAvailable")
    during = [o for o in w2.objects() if o["status"]["observedGeneration"] == 2][:-1]
    assert during and all(_progress(o) == "ReplicaSetUpdated" for o in during)
    assert all(_conditions(o)["Available"]["status"] == "True" for o in during)
    assert all(o["status"]["availableReplicas"] == 3 and o["status"].get("updatedReplicas", 0) < 3 for o in during)
    new_rs = _conditions(done2)["Progressing"]["message"].split('"')[1]
    assert new_rs != first_rs and new_rs.startswith("web-")
    assert done2["status"]["updatedReplicas"] == 3


def test_template_change_during_a_rollout_restarts_it(sandbox, apps, ns, watcher):
    sandbox.faults.rollout_seconds(2.0)  # the one-pod step comes 1 s in, wide enough to be seen under load
    created = apps.create_namespaced_deployment(ns, deployment(replicas=2))
    w = watcher(created.metadata.resource_version)
    w.wait_for(lambda o: (o.get("status") or {}).get("updatedReplicas") == 1)
    patched_at = time.monotonic()
    apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}})
    done, done_at = w.wait_for(lambda o: o["metadata"]["generation"] == 2 and _progress(o) == "NewReplicaSetAvailable")
    assert done_at - patched_at >= 2.0  # the new template gets a full rollout
    assert done["metadata"]["annotations"][REVISION] == "2"
    objects = w.objects()
    at = next(i for i, o in enumerate(objects) if o["status"]["observedGeneration"] == 2)
    restarted, before = objects[at], objects[at - 1]
    assert restarted["status"].get("updatedReplicas", 0) == 0 and _progress(restarted) == "ReplicaSetUpdated"
    # The first template's ready pods stay available while the new one rolls out.
    assert restarted["status"]["availableReplicas"] == before["status"]["availableReplicas"] >= 1
    # Scaling keeps the template: done at once, no rollout.
    apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 4}})
    st = apps.read_namespaced_deployment("web", ns).status
    assert (st.observed_generation, st.updated_replicas, st.available_replicas) == (3, 4, 4)
    assert {c.type: c.reason for c in st.conditions}["Progressing"] == "NewReplicaSetAvailable"


def test_failing_image_times_out_then_completes_when_unlisted(sandbox, apps, ns, watcher):
    _admin(sandbox, "/_sandbox/faults", {"fail_images": [DIGEST], "rollout_seconds": 1.0})
    t0 = time.monotonic()
    created = apps.create_namespaced_deployment(
        ns, deployment(image=f"registry.local/app@{DIGEST}", replicas=2, progressDeadlineSeconds=1))
    w = watcher(created.metadata.resource_version)
    stuck, _ = w.wait_for(lambda o: _progress(o) == "ReplicaSetUpdated")
    st, cond = stuck["status"], _conditions(stuck)
    assert (st["replicas"], st["updatedReplicas"], st["unavailableReplicas"]) == (2, 2, 2)
    assert "availableReplicas" not in st and "readyReplicas" not in st
    assert cond["Available"]["status"] == "False" and cond["Progressing"]["status"] == "True"
    early = apps.read_namespaced_deployment("web", ns)
    if time.monotonic() - t0 < 1.0:  # only meaningful if the read finished before the deadline
        assert {c.type: c.reason for c in early.status.conditions}["Progressing"] == "ReplicaSetUpdated"

    timed_out, at = w.wait_for(lambda o: _progress(o) == "ProgressDeadlineExceeded")
    assert at - t0 >= 1.0  # never before progressDeadlineSeconds
    _assert_valid(sandbox, timed_out)
    progressing = _conditions(timed_out)["Progressing"]
    rs = progressing["message"].split('"')[1]
    assert progressing["status"] == "False"
    assert progressing["message"] == f'ReplicaSet "{rs}" has timed out progressing.'
    assert _conditions(timed_out)["Available"]["reason"] == "MinimumReplicasUnavailable"
    assert timed_out["status"]["unavailableReplicas"] == 2

    # Unlisted: the stuck pods become ready, one step at a time over rollout_seconds.
    assert _admin(sandbox, "/_sandbox/faults", {"fail_images": [OTHER]})["fail_images"] == [OTHER]
    done, _ = w.wait_for(lambda o: _progress(o) == "NewReplicaSetAvailable")
    after = [o for o in w.objects() if _rv(o) > _rv(timed_out)]
    available = [o["status"].get("availableReplicas", 0) for o in after]
    assert available[0] == 0 and available[-1] == 2 and available == sorted(set(available))
    assert all(o["status"]["updatedReplicas"] == 2 for o in after)
    assert _progress(after[0]) == "ReplicaSetUpdated" and _conditions(after[0])["Progressing"]["status"] == "True"
    assert _conditions(done)["Available"]["status"] == "True"
    assert _conditions(done)["Progressing"]["message"] == f'ReplicaSet "{rs}" has successfully progressed.'
    for obj in after:
        _assert_valid(sandbox, obj)


def test_listing_a_running_deployment_counts_the_deadline_from_then(sandbox, apps, ns, watcher):
    created = apps.create_namespaced_deployment(
        ns, deployment(image=f"registry.local/app@{DIGEST}", replicas=2, progressDeadlineSeconds=1))
    ready = apps.read_namespaced_deployment("web", ns)
    assert ready.status.available_replicas == 2  # rollout_seconds 0: at once
    w = watcher(ready.metadata.resource_version)
    time.sleep(0.4)
    listed_at = time.monotonic()
    sandbox.faults.fail_images([OTHER, DIGEST])
    failing = apps.read_namespaced_deployment("web", ns).status
    assert failing.available_replicas is None and failing.unavailable_replicas == 2
    assert {c.type: c.status for c in failing.conditions} == {"Available": "False", "Progressing": "True"}
    _, at = w.wait_for(lambda o: _progress(o) == "ProgressDeadlineExceeded")
    assert at - listed_at >= 1.0  # not 1 s after the rollout started
    assert created.metadata.generation == 1


def test_clear_and_reset_turn_the_switches_off(sandbox, apps, ns):
    sandbox.faults.rollout_seconds(30).fail_images([DIGEST])
    state = _admin(sandbox, "/_sandbox/faults")
    assert (state["rollout_seconds"], state["fail_images"]) == (30.0, [DIGEST])
    apps.create_namespaced_deployment(ns, deployment(replicas=2))
    assert apps.read_namespaced_deployment("web", ns).status.updated_replicas is None  # rolling out for 30 s
    state = _admin(sandbox, "/_sandbox/faults", {"clear": True})
    assert (state["rollout_seconds"], state["fail_images"], state["hold_rollouts"]) == (0.0, [], False)
    assert apps.read_namespaced_deployment("web", ns).status.available_replicas == 2  # 0 finishes it at once

    sandbox.faults.rollout_seconds(1.5).fail_images([DIGEST]).hold_rollouts(True)
    _admin(sandbox, "/_sandbox/reset", {})
    assert sandbox.faults.state() == {"refuse_connections": False, "delay": 0.0, "delay_method": None,
                                      "delay_path_prefix": None, "fail_next": [], "hold_rollouts": False,
                                      "rollout_seconds": 0.0, "fail_images": []}


def test_bad_fault_input_is_rejected_with_the_field_named(sandbox):
    for body, field in [({"rollout_seconds": -1}, "rollout_seconds"), ({"rollout_seconds": "fast"}, "rollout_seconds"),
                        ({"rollout_seconds": True}, "rollout_seconds"), ({"rollout_seconds": None}, "rollout_seconds"),
                        ({"fail_images": DIGEST}, "fail_images"), ({"fail_images": {"d": DIGEST}}, "fail_images"),
                        ({"fail_images": ["sha256:abc"]}, "fail_images[0]"),
                        ({"fail_images": [DIGEST, "sha256:" + "A" * 64]}, "fail_images[1]"),
                        ({"fail_images": ["d" * 64]}, "fail_images[0]"), ({"fail_images": [7]}, "fail_images[0]"),
                        ({"clear": True, "rollout_seconds": -0.5}, "rollout_seconds")]:
        code, message = _admin_error(sandbox, body)
        assert code == 400 and message.startswith(field), (body, message)
    with pytest.raises(ValueError, match="rollout_seconds"):
        sandbox.faults.rollout_seconds(-2)
    with pytest.raises(ValueError, match=r"fail_images\[0\]"):
        sandbox.faults.fail_images(["nope"])
    sandbox.faults.rollout_seconds(2)
    _admin_error(sandbox, {"clear": True, "fail_images": "x"})  # nothing applied, not even the clear
    assert sandbox.faults.state()["rollout_seconds"] == 2.0


def test_reset_and_stop_end_pending_rollouts(sandbox, sandbox_factory, apps, ns):
    sandbox.faults.rollout_seconds(0.6)
    apps.create_namespaced_deployment(ns, deployment(replicas=3))
    controller = sandbox.api.controller
    assert controller._thread is not None and controller._thread.is_alive()
    thread = controller._thread
    _admin(sandbox, "/_sandbox/reset", {})
    thread.join(2)
    assert not thread.is_alive() and controller._due == {}
    rv = sandbox.api.store.current_rv
    time.sleep(0.4)  # two steps would have been due by now
    assert sandbox.api.store.current_rv == rv

    other = sandbox_factory()
    other.faults.rollout_seconds(0.6)
    other.create_object(deployment(replicas=3))
    thread = other.api.controller._thread
    assert thread is not None
    other.stop()
    assert not thread.is_alive()
    rv = other.api.store.current_rv
    time.sleep(0.4)
    assert other.api.store.current_rv == rv


def test_hold_still_works_with_timed_rollouts(sandbox, apps, ns, watcher):
    sandbox.faults.rollout_seconds(0.3).hold_rollouts(True)
    created = apps.create_namespaced_deployment(ns, deployment(replicas=2))
    st = apps.read_namespaced_deployment("web", ns).status
    assert (st.updated_replicas, st.unavailable_replicas, st.available_replicas) == (2, 2, None)
    w = watcher(created.metadata.resource_version)
    time.sleep(0.4)  # held: no deadline, no steps
    assert apps.read_namespaced_deployment("web", ns).status.available_replicas is None
    released_at = time.monotonic()
    sandbox.faults.hold_rollouts(False)
    done, at = w.wait_for(lambda o: _progress(o) == "NewReplicaSetAvailable")
    assert at - released_at >= 0.3 and done["status"]["availableReplicas"] == 2


def test_controller_timeline_without_a_server():
    from sandbox.controller import DeploymentController, max_unavailable

    assert [max_unavailable({}, n) for n in (0, 1, 3, 4, 10)] == [0, 0, 0, 1, 2]  # 25%, rounded down
    assert max_unavailable({"strategy": {"type": "Recreate"}}, 10) == 0
    assert max_unavailable({"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}}, 3) == 1
    assert max_unavailable({"strategy": {"rollingUpdate": {"maxUnavailable": 7}}}, 3) == 3

    def reasons(status):
        return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}

    controller = DeploymentController()
    controller.rollout_seconds = 4.0
    dep = {"metadata": {"uid": "u1", "name": "web", "namespace": "d", "generation": 1},
           "spec": {"replicas": 4, "progressDeadlineSeconds": 10,
                    "template": {"spec": {"containers": [{"name": "web", "image": f"app@{DIGEST}"}]}}}}
    _, st, nxt = controller.desired(dep, "t", mono=100.0)  # the rollout starts at 100
    assert nxt == 101.0 and st == {"observedGeneration": 1, "unavailableReplicas": 4, "conditions": st["conditions"]}
    assert reasons(st) == {"Available": ("False", "MinimumReplicasUnavailable"),
                           "Progressing": ("True", "ReplicaSetUpdated")}
    _, st, nxt = controller.desired(dep, "t", mono=103.0)
    assert nxt == 104.0 and st["availableReplicas"] == 3 and st["unavailableReplicas"] == 1
    assert reasons(st)["Available"] == ("True", "MinimumReplicasAvailable")  # 3 >= 4 - 1
    _, st, nxt = controller.desired(dep, "t", mono=104.0)
    assert nxt is None and reasons(st)["Progressing"] == ("True", "NewReplicaSetAvailable")

    controller.fail_images = {DIGEST: 200.0}  # listed after the rollout started: the deadline counts from 200
    _, st, nxt = controller.desired(dep, "t", mono=209.9)
    assert nxt == 210.0 and reasons(st)["Progressing"] == ("True", "ReplicaSetUpdated")
    assert (st["updatedReplicas"], st["unavailableReplicas"]) == (4, 4) and "availableReplicas" not in st
    _, st, nxt = controller.desired(dep, "t", mono=210.0)
    assert nxt is None and reasons(st)["Progressing"] == ("False", "ProgressDeadlineExceeded")
    assert st["conditions"][1]["message"] == f'ReplicaSet "web-{controller.rollouts["u1"].thash}" has timed out ' \
                                             'progressing.'
