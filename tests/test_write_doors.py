"""Every write, through every door that offers it, meets the same service.

Each case drives one refused write through each door (browser page, wizard,
admin form or action, API) and asserts what the services layer promises:
the same refusal message at every door, nothing written, and one audit
entry naming the door, the action and the message. Successful writes are
audited at every door too, the registry webhook and management commands
included.
"""

from __future__ import annotations

import json
from html import unescape

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from environments import services
from environments.models import Artifact, Binding, Environment, Resource
from projects.models import AuditEntry, Membership, Role
from tests.fixtures.api import api_client_for, resource_url, url
from tests.fixtures.domain import digest

WIZARD = "door-wizard-1"


@pytest.fixture
def world(dev_web, staging, prod, make_resource, members, make_user):
    staging_web = make_resource(staging, upstream=dev_web)
    prod_web = make_resource(prod, upstream=staging_web, binding=Binding.PIN_DIGEST, pinned=digest("p"), replicas=2)
    prod_api = make_resource(prod, "api", image="registry.example.com/shop/api:1")
    services.artifact_publish(resource=dev_web, digest=digest(1))
    # An operator: staff with every admin permission on Hoist's models, but only a developer in the project.
    operator = make_user("operator", is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["projects", "environments"]))
    Membership.objects.create(project=dev_web.project, user=operator, role=Role.DEVELOPER)
    return {"dev_web": dev_web, "staging_web": staging_web, "prod_web": prod_web, "prod_api": prod_api,
            "operator": operator, **members}


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text(response) -> str:
    if response.get("Content-Type", "").startswith("application/json"):
        return json.dumps(response.json())
    return unescape(response.content.decode())


def admin_resource_post(resource, **overrides) -> dict:
    data = {
        "environment": resource.environment_id, "name": resource.name, "kind": resource.kind,
        "source_type": resource.source_type, "image": resource.image,
        "promote_from": resource.promote_from_id or "", "binding": resource.binding,
        "pinned_digest": resource.pinned_digest, "runtime": "", "ports": "[]", "replicas": str(resource.replicas),
        "ingress_host": "", "database_url": "", "schedule": "",
        "env_vars-TOTAL_FORMS": "0", "env_vars-INITIAL_FORMS": "0", "env_vars-MIN_NUM_FORMS": "0",
        "env_vars-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


# --- each door of each refused write ------------------------------------------------------------
# A door: (who, how) → the response. Every door of a case must show the same message.


def change_in_protected_by_api(w):
    return api_client_for(w["developer"]).patch(
        resource_url(w["prod_web"].environment, "web"), {"config": {"replicas": 5}}, format="json", HTTP_IF_MATCH="*")


def change_in_protected_by_web(w):
    return browser(w["developer"]).post("/projects/shop/envs/prod/resources/web/edit/", {
        "action": "save", "replicas": "5", "ports": "", "runtime": "", "ingress_host": ""})


def change_in_protected_by_admin(w):
    prod_web = w["prod_web"]
    return browser(w["operator"]).post(reverse("admin:environments_resource_change", args=[prod_web.pk]),
                                       admin_resource_post(prod_web, replicas="5"))


def same_environment_by_api(w):
    return api_client_for(w["maintainer"]).post(resource_url(w["dev_web"].environment), {
        "name": "copy", "source": {"type": "promote", "environment": "dev", "resource": "web"}}, format="json")


def same_environment_by_wizard(w):
    client = browser(w["maintainer"])
    wizard = "/projects/shop/envs/dev/new-resource/"
    client.post(wizard, {"wizard": WIZARD, "step": "source", "source_type": "promote"})
    client.post(wizard, {"wizard": WIZARD, "step": "source_env", "source_env": w["dev_web"].environment_id})
    return client.post(wizard, {"wizard": WIZARD, "step": "review", "action": "create"})


def same_environment_by_admin(w):
    dev_web = w["dev_web"]
    return browser(w["operator"]).post(reverse("admin:environments_resource_add"), admin_resource_post(
        dev_web, name="copy", source_type="promote", image="", promote_from=dev_web.pk, binding="track_latest",
        pinned_digest=""))


def promote_by_web(w):
    return browser(w["developer"]).post("/projects/shop/envs/prod/resources/web/promote/")


def promote_by_admin(w):
    return browser(w["operator"]).post(reverse("admin:environments_resource_changelist"), {
        "action": "promote_upstream_current", "_selected_action": [w["prod_web"].pk]}, follow=True)


def publish_in_protected_by_api(w):
    return api_client_for(w["developer"]).post(
        resource_url(w["prod_api"].environment, "api", "artifacts"), {"digest": digest(9)}, format="json")


def publish_in_protected_by_admin(w):
    return browser(w["operator"]).post(reverse("admin:environments_artifact_add"), {
        "resource": w["prod_api"].pk, "digest": digest(9), "tag": "", "repository": ""})


def rename_environment_by_api(w):
    return api_client_for(w["developer"]).patch(url("projects", "shop", "environments", "dev"), {"name": "Dev!"},
                                                format="json")


def rename_environment_by_admin(w):
    dev = w["dev_web"].environment
    return browser(w["operator"]).post(reverse("admin:environments_environment_change", args=[dev.pk]), {
        "project": dev.project_id, "name": "Dev!", "slug": dev.slug, "cluster": dev.cluster_id,
        "namespace": dev.namespace, "position": dev.position})


def last_maintainer_by_api(w):
    return api_client_for(w["maintainer"]).patch(url("projects", "shop", "members", "maintainer"), {"role": "viewer"},
                                                 format="json")


def last_maintainer_by_admin(w):
    membership = Membership.objects.get(user=w["maintainer"])
    staff = w["maintainer"]
    staff.is_staff = True
    staff.save()
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="projects"))
    return browser(staff).post(reverse("admin:projects_membership_change", args=[membership.pk]), {
        "project": membership.project_id, "user": membership.user_id, "role": "viewer"})


def snapshot():
    return (
        list(Resource.objects.order_by("pk").values_list("pk", "replicas", "pinned_digest", "binding")),
        Artifact.objects.count(),
        list(Environment.objects.order_by("pk").values_list("name", flat=True)),
        list(Membership.objects.order_by("pk").values_list("role", flat=True)),
    )


CASES = {
    "a developer changes a resource in a protected environment": (
        "resource.update", "You need the maintainer role in project shop to change resources in protected environment prod.",
        [("api", change_in_protected_by_api, 403), ("web", change_in_protected_by_web, 403),
         ("admin", change_in_protected_by_admin, 200)],
    ),
    "a resource promotes from its own environment": (
        "resource.create", "You can't promote into the environment you promote from (dev); pick another source environment.",
        [("api", same_environment_by_api, 400), ("web", same_environment_by_wizard, 200),
         ("admin", same_environment_by_admin, 200)],
    ),
    "a developer promotes into a protected environment": (
        "resource.promote", "You need the maintainer role in project shop to promote in protected environment prod.",
        [("web", promote_by_web, 403), ("admin", promote_by_admin, 200)],
    ),
    "a developer publishes in a protected environment": (
        "artifact.publish", "You need the maintainer role in project shop to publish images in protected environment prod.",
        [("api", publish_in_protected_by_api, 403), ("admin", publish_in_protected_by_admin, 200)],
    ),
    "a developer renames an environment": (
        "environment.update", "You need the maintainer role in project shop to change environments.",
        [("api", rename_environment_by_api, 403), ("admin", rename_environment_by_admin, 200)],
    ),
    "the last maintainer steps down": (
        "membership.set", "A project keeps at least one maintainer; add another one first.",
        [("api", last_maintainer_by_api, 400), ("admin", last_maintainer_by_admin, 200)],
    ),
}
DOORS = [
    pytest.param(action, message, via, drive, status, id=f"{case} [{via}]")
    for case, (action, message, doors) in CASES.items()
    for via, drive, status in doors
]


@pytest.mark.parametrize("action, message, via, drive, status", DOORS)
def test_a_refused_write_reads_the_same_at_every_door_and_is_audited(world, action, message, via, drive, status):
    before = snapshot()
    response = drive(world)
    assert response.status_code == status
    assert message in text(response)
    assert snapshot() == before, "a refused write changed something"
    entries = AuditEntry.objects.filter(action=action, outcome=AuditEntry.Outcome.REFUSED, via=via)
    assert entries.count() == 1, list(AuditEntry.objects.filter(outcome="refused").values_list("action", "via", "message"))
    assert message in entries.get().message
    assert entries.get().project.slug == "shop"


# --- successful writes are audited at every door ------------------------------------------------


def test_a_web_edit_an_admin_change_and_webhook_publishes_are_each_audited(world, admin_client, settings):
    AuditEntry.objects.all().delete()  # what the fixtures wrote (as Hoist itself)
    response = browser(world["maintainer"]).post("/projects/shop/envs/prod/resources/web/edit/", {
        "action": "save", "replicas": "4", "ports": "", "runtime": "", "ingress_host": ""})
    assert response.status_code == 302
    prod_web = Resource.objects.get(pk=world["prod_web"].pk)
    response = admin_client.post(reverse("admin:environments_resource_change", args=[prod_web.pk]),
                                 admin_resource_post(prod_web, replicas="6"))
    assert response.status_code == 302
    settings.HOIST_WEBHOOK_TOKEN = "hook"
    services.resource_update(resource=world["dev_web"], image="registry.a.example/shop/web:main")
    AuditEntry.objects.filter(via="system").delete()
    for n in range(4):
        body = {"events": [{"id": f"e{n}", "action": "push", "request": {"host": "registry.a.example"}, "target": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": digest(f"w{n}"),
            "repository": "shop/web", "tag": "main"}}]}
        assert Client().post("/hooks/registry/?registry=registry.a.example", json.dumps(body),
                             content_type="application/json", HTTP_AUTHORIZATION="Bearer hook").status_code == 202

    rows = list(AuditEntry.objects.order_by("id").values_list("via", "action", "outcome"))
    assert rows == [("web", "resource.update", "ok"), ("admin", "resource.update", "ok")] + [
        ("webhook", "artifact.publish", "ok")] * 4
    web_entry = AuditEntry.objects.filter(via="web").get()
    assert (web_entry.changes["before"]["replicas"], web_entry.changes["after"]["replicas"]) == (2, 4)
    hook = AuditEntry.objects.filter(via="webhook").first()
    assert hook.actor is None and hook.actor_label.startswith("registry webhook")


def test_a_management_command_writes_through_the_services_as_the_command_door(db):
    call_command("seed_demo", "--cluster", "cluster-a=http://127.0.0.1:1", "--cluster", "cluster-b=http://127.0.0.1:2",
                 "--password", "demo-password-1")
    doors = set(AuditEntry.objects.values_list("via", flat=True))
    assert doors == {"command"}
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"project.create", "membership.set", "cluster.create", "environment.create", "resource.create"} <= actions
