"""An environment's page, a resource's page, and editing a resource with the changes shown first."""

import json
from datetime import timedelta

import pytest
from django.db.models import F

from environments.models import Binding, EnvVar, Resource
from promotions.models import Promotion
from tests.fixtures.domain import digest
from tests.fixtures.web import htmx

PROD = "/projects/shop/envs/prod/resources/web/"
STAGING = "/projects/shop/envs/staging/resources/web/"


# --- environment page ----------------------------------------------------------------------------


def test_the_environment_page_lists_its_resources(maintainer_client, pipeline_world):
    response = maintainer_client.get("/projects/shop/envs/staging/")
    body = response.content.decode()
    assert response.status_code == 200 and "<html" in body
    assert "+ Create Resource" in body and digest(2)[7:19] in body and "1 behind" in body and "from dev/web" in body


def test_the_environment_resources_refresh_alone(viewer_client, pipeline_world):
    body = viewer_client.get("/projects/shop/envs/prod/", **htmx("resources")).content.decode()
    assert "<html" not in body and 'id="resources"' in body and "2 behind" in body
    assert "Edit" not in body


def test_an_unknown_environment_is_404(maintainer_client, pipeline_world):
    assert maintainer_client.get("/projects/shop/envs/nope/").status_code == 404


def test_environment_page_queries_do_not_grow(maintainer_client, dev, make_resource, members, django_assert_max_num_queries):
    for i in range(20):
        make_resource(dev, f"svc-{i}")
    with django_assert_max_num_queries(7):  # 6, and its freeze windows
        maintainer_client.get("/projects/shop/envs/dev/")


# --- resource page -------------------------------------------------------------------------------


def test_the_resource_page_shows_source_config_status_and_history(maintainer_client, pipeline_world):
    prod_web = pipeline_world["prod_web"]
    prod_web.env_vars.create(name="TOKEN", value="very-secret", secret=True)
    # Applied 2.5 s after it was created (the latency from the upstream's old publish is not what a create shows).
    Promotion.objects.filter(resource=prod_web).update(status="failed", error="cluster-b refused: 422 bad spec", latency_s=99.0,
                                                       applied_at=F("queued_at") + timedelta(seconds=2.5))
    body = maintainer_client.get(PROD).content.decode()
    assert "Pinned to" in body and digest(1) in body and "2 behind" in body
    assert "very-secret" not in body and "TOKEN" in body
    assert "cluster-b refused: 422 bad spec" in body and "requested → applied <strong>2.5 s" in body and "Resource created" in body
    assert "maintainer" in body  # who
    assert "/promote/" in body  # maintainers may promote to the upstream's current digest


def test_the_resource_live_part_refreshes_alone(viewer_client, pipeline_world):
    response = viewer_client.get(PROD, **htmx("resource-live"))
    body = response.content.decode()
    assert "<html" not in body and 'id="resource-live"' in body and "Promotion history" in body
    assert "/promote/" not in body


def test_resource_page_queries_do_not_grow_with_history(maintainer_client, pipeline_world, django_assert_max_num_queries):
    prod_web = pipeline_world["prod_web"]
    Promotion.objects.bulk_create([Promotion(resource=prod_web, to_digest=digest(i), reason="pin_edit") for i in range(40)])
    with django_assert_max_num_queries(13):  # 9, the keep-tag protection (2), open change requests, freeze windows
        maintainer_client.get(PROD)


def test_an_unknown_resource_is_404(maintainer_client, pipeline_world):
    assert maintainer_client.get("/projects/shop/envs/prod/resources/nope/").status_code == 404


def test_a_non_member_gets_404_for_resource_pages(outsider_client, pipeline_world):
    for url in (PROD, PROD + "edit/", PROD + "promote/"):
        assert outsider_client.get(url).status_code == 404


# --- edit ----------------------------------------------------------------------------------------


def edit_post(resource, **overrides):
    data = {"binding": resource.binding, "pinned_digest": resource.pinned_digest, "runtime": resource.runtime,
            "ports": "8080" if resource.ports else "", "replicas": str(resource.replicas), "ingress_host": resource.ingress_host}
    data.update(overrides)
    return data


def test_the_edit_page_shows_the_current_values(maintainer_client, pipeline_world):
    body = maintainer_client.get(PROD + "edit/").content.decode()
    assert f'value="{digest(1)}"' in body and 'name="digest_pick"' in body and 'value="3"' in body
    assert "What will change" in body


def test_preview_says_what_a_pin_edit_will_change_before_saving(maintainer_client, pipeline_world):
    prod_web = pipeline_world["prod_web"]
    response = maintainer_client.post(PROD + "edit/", {**edit_post(prod_web, pinned_digest=digest(3), replicas="5"), "action": "preview"},
                                      **htmx("changes"))
    body = response.content.decode()
    assert "<html" not in body and "<form" not in body  # the panel's content (it is swapped inside #changes)
    assert digest(1) in body and digest(3) in body
    assert "Replicas" in body and ">3<" in body and ">5<" in body
    prod_web.refresh_from_db()
    assert prod_web.pinned_digest == digest(1)  # nothing saved yet


def test_saving_a_new_pin_promotes_it(maintainer_client, pipeline_world):
    prod_web = pipeline_world["prod_web"]
    response = maintainer_client.post(PROD + "edit/", {**edit_post(prod_web, pinned_digest=digest(3)), "action": "save"})
    assert response.status_code == 302 and response["Location"] == PROD
    prod_web.refresh_from_db()
    assert prod_web.pinned_digest == digest(3)
    promotion = Promotion.objects.filter(resource=prod_web, reason="pin_edit").get()
    assert (promotion.from_digest, promotion.to_digest, promotion.actor.username) == (digest(1), digest(3), "maintainer")
    assert "Pin edited" in maintainer_client.get(PROD).content.decode()


def test_saving_over_htmx_answers_with_hx_location(maintainer_client, pipeline_world):
    prod_web = pipeline_world["prod_web"]
    response = maintainer_client.post(PROD + "edit/", {**edit_post(prod_web, binding="track_latest", pinned_digest=""), "action": "save"},
                                      **htmx("edit-form"))
    assert json.loads(response["HX-Location"])["path"] == PROD
    prod_web.refresh_from_db()
    assert (prod_web.binding, prod_web.pinned_digest) == (Binding.TRACK_LATEST, "")


def test_switching_to_track_latest_previews_the_upstreams_latest(maintainer_client, pipeline_world):
    prod_web = pipeline_world["prod_web"]
    body = maintainer_client.post(PROD + "edit/", {**edit_post(prod_web, binding="track_latest"), "action": "preview"},
                                  **htmx("changes")).content.decode()
    assert "Track latest" in body and digest(3) in body and "the latest of" in body


def test_a_bad_digest_is_shown_next_to_the_field_and_nothing_is_saved(maintainer_client, pipeline_world):
    prod_web = pipeline_world["prod_web"]
    response = maintainer_client.post(PROD + "edit/", {**edit_post(prod_web, pinned_digest="sha256:nope"), "action": "save"},
                                      **htmx("edit-form"))
    body = response.content.decode()
    assert response.status_code == 200 and 'id="edit-form"' in body and "<html" not in body
    assert "64 lower-case hex" in body and 'aria-invalid="true"' in body
    prod_web.refresh_from_db()
    assert prod_web.pinned_digest == digest(1)


def test_a_developer_cannot_change_a_protected_environment(developer_client, pipeline_world):
    assert developer_client.get(PROD + "edit/").status_code == 403
    prod_web = pipeline_world["prod_web"]
    assert developer_client.post(PROD + "edit/", {**edit_post(prod_web, pinned_digest=digest(3)), "action": "save"}).status_code == 403
    assert "/edit/" not in developer_client.get(PROD).content.decode()
    prod_web.refresh_from_db()
    assert prod_web.pinned_digest == digest(1)


def test_a_developer_edits_config_but_not_the_binding_in_staging(developer_client, pipeline_world):
    staging_web = pipeline_world["staging_web"]
    body = developer_client.get(STAGING + "edit/").content.decode()
    assert 'name="binding"' not in body and "needs the maintainer role" in body
    # A forged binding is ignored: only config changes.
    response = developer_client.post(STAGING + "edit/", {**edit_post(staging_web, binding="pin_digest", pinned_digest=digest(1), replicas="4"), "action": "save"})
    assert response.status_code == 302
    staging_web.refresh_from_db()
    assert (staging_web.binding, staging_web.replicas) == (Binding.TRACK_LATEST, 4)


def test_a_viewer_cannot_edit(viewer_client, pipeline_world):
    assert viewer_client.get(STAGING + "edit/").status_code == 403


def test_secrets_stay_masked_and_are_kept_when_left_empty(maintainer_client, pipeline_world):
    staging_web = pipeline_world["staging_web"]
    staging_web.env_vars.create(name="TOKEN", value="very-secret", secret=True)
    body = maintainer_client.get(STAGING + "edit/").content.decode()
    assert "very-secret" not in body and "secret set — leave empty to keep" in body
    data = {**edit_post(staging_web), "env-0-name": "TOKEN", "env-0-value": "", "env-0-secret": "on",
            "env-1-name": "MODE", "env-1-value": "staging", "action": "preview"}
    body = maintainer_client.post(STAGING + "edit/", data, **htmx("changes")).content.decode()
    assert "Env MODE" in body and "very-secret" not in body and "Env TOKEN" not in body
    maintainer_client.post(STAGING + "edit/", {**data, "action": "save"})
    assert {(v.name, v.value, v.secret) for v in EnvVar.objects.filter(resource=staging_web)} == {("TOKEN", "very-secret", True), ("MODE", "staging", False)}


def test_a_secret_cannot_be_made_plain_without_a_new_value(maintainer_client, pipeline_world):
    staging_web = pipeline_world["staging_web"]
    staging_web.env_vars.create(name="TOKEN", value="very-secret", secret=True)
    data = {**edit_post(staging_web), "env-0-name": "TOKEN", "env-0-value": "", "action": "save"}
    body = maintainer_client.post(STAGING + "edit/", data).content.decode()
    assert "Give TOKEN a new value" in body and "very-secret" not in body
    assert EnvVar.objects.get(name="TOKEN").secret


def test_the_database_url_is_kept_replaced_or_removed(maintainer_client, pipeline_world):
    staging_web = pipeline_world["staging_web"]
    Resource.objects.filter(pk=staging_web.pk).update(database_url="postgres://old")
    staging_web.refresh_from_db()
    assert "postgres://old" not in maintainer_client.get(STAGING + "edit/").content.decode()
    maintainer_client.post(STAGING + "edit/", {**edit_post(staging_web), "action": "save"})
    staging_web.refresh_from_db()
    assert staging_web.database_url == "postgres://old"
    maintainer_client.post(STAGING + "edit/", {**edit_post(staging_web), "database_url_clear": "1", "action": "save"})
    staging_web.refresh_from_db()
    assert staging_web.database_url == ""


def test_an_image_source_edits_its_image(developer_client, pipeline_world):
    dev_web = pipeline_world["dev_web"]
    url = "/projects/shop/envs/dev/resources/web/edit/"
    body = developer_client.post(url, {"image": "registry.example.com/shop/web:2.0", "ports": "8080", "replicas": "1", "action": "preview"},
                                 **htmx("changes")).content.decode()
    assert "registry.example.com/shop/web:2.0" in body
    developer_client.post(url, {"image": "registry.example.com/shop/web:2.0", "ports": "8080", "replicas": "1", "action": "save"})
    dev_web.refresh_from_db()
    assert dev_web.image == "registry.example.com/shop/web:2.0"


@pytest.mark.parametrize("target", [None, "edit-form"])
def test_a_preview_without_the_changes_target_renders_the_form(maintainer_client, pipeline_world, target):
    prod_web = pipeline_world["prod_web"]
    headers = htmx(target) if target else {}
    body = maintainer_client.post(PROD + "edit/", {**edit_post(prod_web, replicas="7"), "action": "preview"}, **headers).content.decode()
    assert 'id="edit-form"' in body and "Replicas" in body
    assert ("<html" in body) is (target is None)


def test_add_variables_gives_more_empty_rows_keeping_what_was_typed(maintainer_client, pipeline_world):
    staging_web = pipeline_world["staging_web"]
    data = {**edit_post(staging_web), "env-0-name": "MODE", "env-0-value": "x", "env-1-name": "", "env-1-value": "",
            "env-2-name": "", "env-2-value": "", "action": "add_env"}
    body = maintainer_client.post(STAGING + "edit/", data, **htmx("edit-form")).content.decode()
    assert 'value="MODE"' in body and 'name="env-4-name"' in body
    staging_web.refresh_from_db()
    assert not staging_web.env_vars.exists()  # nothing saved


def test_the_rollout_settings_are_edited_and_shown(maintainer_client, pipeline_world):
    staging_web = pipeline_world["staging_web"]
    body = maintainer_client.get(STAGING + "edit/").content.decode()
    assert 'name="soak_seconds"' in body and 'name="rollback_on_failure"' in body and 'name="follow"' in body
    response = maintainer_client.post(STAGING + "edit/", {
        **edit_post(staging_web), "follow": "published", "soak_seconds": "120", "progress_deadline_seconds": "90",
        "rollback_on_failure": "on", "action": "save"})
    assert response.status_code == 302
    staging_web.refresh_from_db()
    assert (staging_web.follow, staging_web.soak_seconds, staging_web.progress_deadline_seconds,
            staging_web.rollback_on_failure) == ("published", 120, 90, True)
    page = maintainer_client.get(STAGING).content.decode()
    assert "publishes" in page and "after 120 s healthy" in page


@pytest.mark.parametrize("field, value, message", [
    ("soak_seconds", "-5", "Soak seconds must be a whole number of seconds from 0 to 604800"),
    ("progress_deadline_seconds", "0", "Progress deadline seconds must be a whole number of seconds from 1 to 86400"),
    ("follow", "whatever", "Follow must be one of: healthy, published"),
])
def test_bad_rollout_settings_are_shown_next_to_their_field(maintainer_client, pipeline_world, field, value, message):
    staging_web = pipeline_world["staging_web"]
    response = maintainer_client.post(STAGING + "edit/", {**edit_post(staging_web), field: value, "action": "save"})
    assert response.status_code == 200
    assert message in response.content.decode()
    staging_web.refresh_from_db()
    assert (staging_web.follow, staging_web.soak_seconds, staging_web.progress_deadline_seconds) == ("healthy", 0, 600)


def test_desired_and_running_are_both_shown_while_rolling_out(maintainer_client, pipeline_world):
    prod_web = pipeline_world["prod_web"]
    Resource.objects.filter(pk=prod_web.pk).update(
        current_digest=digest(2), healthy_digest=digest(1), phase="progressing", rollout_ready=1, rollout_total=3)
    page = maintainer_client.get(PROD).content.decode()
    assert "rolling out 1/3" in page and digest(2) in page and digest(1) in page
    pipeline = maintainer_client.get("/projects/shop/").content.decode()
    assert "rolling out 1/3" in pipeline and f"runs <code>{digest(1)[7:19]}</code>" in pipeline


def test_an_image_on_a_forbidden_registry_is_an_error_next_to_the_field(developer_client, pipeline_world, settings):
    """The outbound policy (issue 11, row 3) on the page: the field says why, nothing is saved."""
    settings.HOIST_ALLOWED_REGISTRIES, settings.HOIST_ALLOW_PRIVATE_REGISTRIES = [], False
    dev_web = pipeline_world["dev_web"]
    url = "/projects/shop/envs/dev/resources/web/edit/"
    response = developer_client.post(url, {"image": "169.254.169.254/latest:1", "ports": "8080", "replicas": "1",
                                           "action": "save"})
    body = response.content.decode()
    assert response.status_code in (200, 400) and "outbound policy" in body
    dev_web.refresh_from_db()
    assert dev_web.image != "169.254.169.254/latest:1"
