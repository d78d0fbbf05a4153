"""`make run` twice on one checkout: the demo's ports are remembered, and seed_demo follows the ports it is given.

No process is started here: `demo_ports` is tried with real sockets on
127.0.0.1, and seed_demo is called twice as rundemo would call it after a
restart whose ports moved (a remembered port was taken meanwhile).
"""

import io
import json
import socket

import pytest
from django.core.management import call_command

from environments.models import Cluster, Environment, Resource
from projects.models import AuditEntry, Membership, Project
from promotions.management.commands.rundemo import demo_ports, port_free
from tests.fixtures.domain import digest

NAMES = ["cluster-a", "cluster-b", "registry-central", "registry-cluster-a", "registry-cluster-b"]


def listening(port=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


# --- the ports ---------------------------------------------------------------------------------


def test_the_first_run_picks_free_distinct_ports_and_remembers_them(tmp_path):
    path = tmp_path / "var" / "demo-ports.json"
    ports = demo_ports(path, NAMES)
    assert list(ports) == NAMES
    assert len(set(ports.values())) == len(NAMES)
    assert all(port_free(port) for port in ports.values())
    assert json.loads(path.read_text()) == ports


def test_a_later_run_reuses_the_remembered_ports_while_they_are_free(tmp_path):
    path = tmp_path / "demo-ports.json"
    first = demo_ports(path, NAMES)
    assert demo_ports(path, NAMES) == first
    assert json.loads(path.read_text()) == first


def test_a_remembered_port_that_is_taken_is_replaced_and_the_others_kept(tmp_path):
    path = tmp_path / "demo-ports.json"
    taken = listening()
    try:
        port = taken.getsockname()[1]
        # Remembered from an earlier run; something else listens there now.
        path.write_text(json.dumps({"cluster-a": port}))
        assert not port_free(port)
        ports = demo_ports(path, NAMES)
        assert ports["cluster-a"] != port
        assert port not in ports.values()
        assert len(set(ports.values())) == len(NAMES)
        assert json.loads(path.read_text())["cluster-a"] == ports["cluster-a"]
    finally:
        taken.close()
    # Free again: the new port stays (the file remembers it), the others too.
    assert demo_ports(path, NAMES) == ports


def test_names_not_asked_for_stay_remembered(tmp_path):
    """A run without docker-registry asks only for the clusters; the registries' ports are kept for later."""
    path = tmp_path / "demo-ports.json"
    everything = demo_ports(path, NAMES)
    clusters = demo_ports(path, ["cluster-a", "cluster-b"])
    assert clusters == {"cluster-a": everything["cluster-a"], "cluster-b": everything["cluster-b"]}
    assert json.loads(path.read_text()) == everything


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]", '{"cluster-a": "x", "cluster-b": 0}'])
def test_an_unreadable_file_means_new_ports(tmp_path, content):
    path = tmp_path / "demo-ports.json"
    path.write_text(content)
    ports = demo_ports(path, ["cluster-a", "cluster-b"])
    assert all(0 < port < 65536 for port in ports.values()) and ports["cluster-a"] != ports["cluster-b"]
    assert json.loads(path.read_text()) == ports


def test_two_names_never_share_a_remembered_port(tmp_path):
    path = tmp_path / "demo-ports.json"
    port = demo_ports(path, ["cluster-a"])["cluster-a"]
    path.write_text(json.dumps({"cluster-a": port, "cluster-b": port}))
    ports = demo_ports(path, ["cluster-a", "cluster-b"])
    assert ports["cluster-a"] == port and ports["cluster-b"] != port


# --- seed_demo after a restart -----------------------------------------------------------------

PIN = digest("seeded")


def seed(cluster_a, cluster_b, registry_a, registry_b, pin=PIN):
    """What rundemo passes to seed_demo (with registries)."""
    call_command(
        "seed_demo",
        f"--cluster=cluster-a=http://127.0.0.1:{cluster_a}", f"--cluster=cluster-b=http://127.0.0.1:{cluster_b}",
        f"--registry=cluster-a=127.0.0.1:{registry_a}", f"--registry=cluster-b=127.0.0.1:{registry_b}",
        f"--image=127.0.0.1:{registry_a}/shop/web:main", f"--pin={pin}", "--password=demo-password-1",
        stdout=io.StringIO(),
    )


def counts():
    return {model.__name__: model.objects.count() for model in (Project, Membership, Cluster, Environment, Resource)}


def web(environment):
    return Resource.objects.get(environment__project__slug="shop", environment__slug=environment, name="web")


def test_a_second_seed_with_new_ports_updates_what_names_them_and_duplicates_nothing(db):
    seed(7001, 7002, 5001, 5002)
    created = counts()
    assert created == {"Project": 1, "Membership": 1, "Cluster": 2, "Environment": 3, "Resource": 3}
    assert web("dev").image == "127.0.0.1:5001/shop/web:main"
    assert web("prod").pinned_digest == PIN
    first_entries = AuditEntry.objects.count()
    Resource.objects.update(dirty_at=None)  # as after the first run's reconciles

    seed(7101, 7102, 5101, 5102, pin=digest("another"))

    assert counts() == created
    clusters = {c.slug: (c.api_url, c.registry) for c in Cluster.objects.all()}
    assert clusters == {"cluster-a": ("http://127.0.0.1:7101", "127.0.0.1:5101"),
                        "cluster-b": ("http://127.0.0.1:7102", "127.0.0.1:5102")}
    assert web("dev").image == "127.0.0.1:5101/shop/web:main"
    assert web("prod").pinned_digest == PIN  # the pin stays, whatever --pin says now
    assert web("staging").promote_from_id == web("dev").pk and web("prod").promote_from_id == web("staging").pk

    second = AuditEntry.objects.order_by("id")[first_entries:]
    assert {entry.via for entry in AuditEntry.objects.all()} == {"command"}
    assert all(entry.outcome == "ok" for entry in second)
    actions = [entry.action for entry in second]
    assert actions.count("cluster.update") == 2
    assert actions.count("resource.update") == 1  # dev/web's image, through the service
    update = next(entry for entry in second if entry.action == "resource.update")
    assert update.target_id == str(web("dev").pk)
    assert "create" not in " ".join(actions)
    # Every resource of the demo is asked to reconcile (the clusters came up empty).
    assert actions.count("resource.reconcile") == 3
    assert not Resource.objects.filter(dirty_at__isnull=True).exists()


def test_a_second_seed_with_the_same_ports_changes_no_image(db):
    seed(7001, 7002, 5001, 5002)
    first_entries = AuditEntry.objects.count()
    seed(7001, 7002, 5001, 5002)
    actions = list(AuditEntry.objects.order_by("id")[first_entries:].values_list("action", flat=True))
    assert "resource.update" not in actions
    assert actions.count("resource.reconcile") == 3
    assert web("dev").image == "127.0.0.1:5001/shop/web:main"


def test_a_seed_without_registries_leaves_the_image_alone(db):
    """docker-registry missing this time: the default --image names no current registry, nothing to follow."""
    seed(7001, 7002, 5001, 5002)
    call_command("seed_demo", "--cluster=cluster-a=http://127.0.0.1:7201", "--cluster=cluster-b=http://127.0.0.1:7202",
                 "--password=demo-password-1", stdout=io.StringIO())
    assert web("dev").image == "127.0.0.1:5001/shop/web:main"
    assert Cluster.objects.get(slug="cluster-a").registry == "127.0.0.1:5001"  # kept
    assert Cluster.objects.get(slug="cluster-a").api_url == "http://127.0.0.1:7201"
