"""The Create Resource wizard: every step as a full page and as an HTMX partial,
each step's bad input, Back, the no-JavaScript flow, and role checks."""

import json
import re
from html import unescape

import pytest

from environments import services as env_services
from environments.models import Binding, EnvVar, Kind, Resource
from environments import services as promotion_services
from promotions.models import Promotion
from tests.fixtures.domain import digest
from tests.fixtures.web import htmx

WIZ = "test-wizard-1"
URL = "/projects/shop/envs/{env}/new-resource/"


def url(env="prod"):
    return URL.format(env=env)


def post(client, step, action="next", env="prod", hx=False, **fields):
    data = {"wizard": WIZ, "step": step, "action": action, **fields}
    return client.post(url(env), data, **(htmx("wizard") if hx else {}))


def html(response) -> str:
    return response.content.decode()


def errors_of(response, field) -> str:
    match = re.search(rf'id="{field}-errors"[^>]*>(.*?)</div>', html(response), re.S)
    return unescape(match.group(1)) if match else ""


@pytest.fixture
def upstream(dev_web, staging, make_resource):
    """dev/web publishes twice; staging/web tracks it. Also a cronjob in dev (not promotable)."""
    promotion_services.artifact_publish(resource=dev_web, digest=digest(1), tag="1.1")
    promotion_services.artifact_publish(resource=dev_web, digest=digest(2), tag="1.2")
    Resource.objects.filter(pk=dev_web.pk).update(current_digest=digest(2), applied_seq=2)
    env_services.resource_create(
        environment=dev_web.environment, name="nightly", kind=Kind.CRONJOB, source_type="image",
        image="registry.example.com/shop/job:1", schedule="0 3 * * *",
    )
    make_resource(staging, upstream=dev_web)
    dev_web.refresh_from_db()
    return dev_web


def promote_until_config(client, upstream, binding="track_latest", pinned="", env="prod", hx=False):
    post(client, "source", source_type="promote", env=env, hx=hx)
    post(client, "source_env", source_env=upstream.environment.pk, env=env, hx=hx)
    post(client, "source_resource", promote_from=upstream.pk, env=env, hx=hx)
    return post(client, "binding", binding=binding, pinned_digest=pinned, env=env, hx=hx)


CONFIG = {
    "name": "web", "runtime": "", "ports": "8080, metrics:9090", "replicas": "3", "ingress_host": "shop.example.com",
    "database_url": "postgres://u:p@db/prod",
    "env-0-name": "MODE", "env-0-value": "prod", "env-1-name": "API_KEY", "env-1-value": "s3cret-value", "env-1-secret": "on",
    "env-2-name": "", "env-2-value": "",
}


# --- the whole flow ------------------------------------------------------------------------------


def test_a_plain_post_flow_creates_a_pinned_promoted_resource(maintainer_client, upstream, prod):
    """Without JavaScript: each step posts and redirects to the next (post/redirect/get)."""
    response = maintainer_client.get(url())
    assert response.status_code == 200 and 'id="wizard"' in html(response) and "<html" in html(response)
    response = post(maintainer_client, "source", source_type="promote")
    assert response.status_code == 302 and response["Location"] == f"{url()}?wizard={WIZ}&step=source_env"
    page = maintainer_client.get(response["Location"])
    assert "Step 2 of 6: Source environment" in html(page)
    response = post(maintainer_client, "source_env", source_env=upstream.environment.pk)
    assert response["Location"].endswith("step=source_resource")
    response = post(maintainer_client, "source_resource", promote_from=upstream.pk)
    assert response["Location"].endswith("step=binding")
    response = post(maintainer_client, "binding", binding="pin_digest", pinned_digest=digest(1))
    assert response["Location"].endswith("step=config")
    response = post(maintainer_client, "config", **CONFIG)
    assert response["Location"].endswith("step=review")
    review = html(maintainer_client.get(response["Location"]))
    assert digest(1) in review and "s3cret-value" not in review and "postgres://" not in review
    response = post(maintainer_client, "review", action="create")
    assert response.status_code == 302 and response["Location"] == "/projects/shop/envs/prod/resources/web/"

    created = Resource.objects.get(environment=prod, name="web")
    assert (created.promote_from, created.binding, created.pinned_digest) == (upstream, Binding.PIN_DIGEST, digest(1))
    assert created.ports == [{"name": "p8080", "port": 8080, "protocol": "TCP"}, {"name": "metrics", "port": 9090, "protocol": "TCP"}]
    assert (created.replicas, created.ingress_host, created.database_url) == (3, "shop.example.com", "postgres://u:p@db/prod")
    assert {(v.name, v.value, v.secret) for v in created.env_vars.all()} == {("MODE", "prod", False), ("API_KEY", "s3cret-value", True)}
    assert Promotion.objects.get(resource=created).to_digest == digest(1)
    # The wizard is finished: its state is gone from the session.
    assert not any(key.endswith(WIZ) for key in maintainer_client.session.get("resource_wizards", {}))


def test_an_htmx_flow_swaps_partials_and_finishes_with_hx_location(maintainer_client, upstream, prod):
    response = post(maintainer_client, "source", source_type="promote", hx=True)
    assert response.status_code == 200
    body = html(response)
    assert "<html" not in body and "Step 2 of 6: Source environment" in body
    assert response["HX-Push-Url"] == f"{url()}?wizard={WIZ}&step=source_env"
    assert 'hx-target="#wizard"' in body
    response = post(maintainer_client, "source_env", source_env=upstream.environment.pk, hx=True)
    assert "Step 3 of 6: Source resource" in html(response)
    response = post(maintainer_client, "source_resource", promote_from=upstream.pk, hx=True)
    assert "Step 4 of 6: Binding" in html(response)
    response = post(maintainer_client, "binding", binding="track_latest", hx=True)
    assert "Step 5 of 6: Configuration" in html(response)
    response = post(maintainer_client, "config", hx=True, **{**CONFIG, "name": "shop-web"})
    assert "Step 6 of 6: Review" in html(response) and "Track latest" in html(response)
    response = post(maintainer_client, "review", action="create", hx=True)
    assert response.status_code == 200
    assert json.loads(response["HX-Location"])["path"] == "/projects/shop/envs/prod/resources/shop-web/"
    created = Resource.objects.get(environment=prod, name="shop-web")
    assert (created.binding, created.pinned_digest) == (Binding.TRACK_LATEST, "")


def test_the_image_source_flow_is_image_config_review(developer_client, dev, members):
    response = post(developer_client, "source", env="dev", source_type="image", hx=True)
    assert "Step 2 of 4: Image" in html(response)
    response = post(developer_client, "image", env="dev", image="registry.example.com/shop/api:2.0", hx=True)
    assert "Step 3 of 4: Configuration" in html(response)
    post(developer_client, "config", env="dev", hx=True, name="api", ports="8000", replicas="1")
    response = post(developer_client, "review", env="dev", action="create")
    assert response["Location"] == "/projects/shop/envs/dev/resources/api/"
    created = Resource.objects.get(environment=dev, name="api")
    assert (created.source_type, created.image, created.promote_from) == ("image", "registry.example.com/shop/api:2.0", None)


def test_a_promoted_resource_starts_from_empty_config_not_the_upstreams(maintainer_client, upstream, prod):
    upstream.env_vars.create(name="UPSTREAM_ONLY", value="x")
    response = promote_until_config(maintainer_client, upstream, hx=True)
    body = html(response)
    assert "UPSTREAM_ONLY" not in body and "nothing is copied from the upstream" in body
    assert re.search(r'name="ports" type="text" value=""', body)


# --- Back keeps what was entered ------------------------------------------------------------------


def test_back_keeps_what_was_entered_even_unchecked(maintainer_client, upstream):
    promote_until_config(maintainer_client, upstream, binding="pin_digest", pinned=digest(1))
    response = post(maintainer_client, "config", action="back", hx=True, **{**CONFIG, "name": "Not Valid!"})
    body = html(response)
    assert "Step 4 of 6: Binding" in body and f'value="{digest(1)}"' in body
    assert re.search(r'value="pin_digest"\s+checked', body)
    response = post(maintainer_client, "binding", action="back", hx=True, binding="pin_digest", pinned_digest=digest(1))
    assert re.search(rf'value="{upstream.pk}"[^>]*checked', html(response))
    response = post(maintainer_client, "binding", hx=True, binding="pin_digest", pinned_digest=digest(1))
    body = html(response)
    assert 'value="Not Valid!"' in body and 'value="8080, metrics:9090"' in body and 'value="shop.example.com"' in body
    assert 'value="MODE"' in body and 'value="prod"' in body
    assert "s3cret-value" not in body  # a secret stays masked…
    assert "secret set — leave empty to keep" in body
    post(maintainer_client, "config", **{**CONFIG, "env-1-value": ""})  # …and is kept when left empty
    post(maintainer_client, "review", action="create")
    assert EnvVar.objects.get(name="API_KEY").value == "s3cret-value"


def test_back_from_the_first_step_stays_there(maintainer_client, prod, members):
    response = post(maintainer_client, "source", action="back", hx=True, source_type="image")
    assert "Step 1 of" in html(response)


def test_choosing_another_source_environment_forgets_the_resource(maintainer_client, upstream, staging):
    promote_until_config(maintainer_client, upstream)
    post(maintainer_client, "source_env", source_env=staging.pk)
    response = post(maintainer_client, "source_resource", hx=True)
    assert "Pick the resource to promote from." in errors_of(response, "promote_from")


def test_a_step_past_unfinished_ones_shows_the_first_unfinished(maintainer_client, prod, members):
    response = maintainer_client.get(url() + f"?wizard={WIZ}&step=review")
    assert "Step 1 of" in html(response)


# --- each step's bad input -------------------------------------------------------------------------


def test_source_needs_a_choice(maintainer_client, prod, members):
    for hx in (False, True):
        response = post(maintainer_client, "source", hx=hx)
        assert response.status_code == 200
        assert "Choose Image or Promote from environment." in errors_of(response, "source_type")
        assert ("<html" in html(response)) is not hx


def test_source_environments_are_same_project_with_deployments_never_the_target(maintainer_client, upstream, prod, other_project, cluster_a):
    other_env = env_services.environment_create(project=other_project, name="o", slug="o", cluster=cluster_a, namespace="o-ns")
    env_services.resource_create(environment=other_env, name="web", source_type="image", image="r.example.com/o/web:1")
    response = post(maintainer_client, "source", source_type="promote", hx=True)
    body = html(response)
    choices = re.findall(r'name="source_env" value="(\d+)"', body)
    # dev and staging have deployments; prod is the target; the other project's environment never shows.
    assert sorted(choices) == sorted([str(upstream.environment.pk), str(Resource.objects.get(environment__slug="staging").environment_id)])


@pytest.mark.parametrize("value, message", [
    ("", "Pick the environment to promote from."),
    ("abc", "Pick one of the environments listed."),
])
def test_source_environment_bad_input(maintainer_client, upstream, value, message):
    post(maintainer_client, "source", source_type="promote")
    response = post(maintainer_client, "source_env", hx=True, source_env=value)
    assert message in errors_of(response, "source_env")


def test_source_environment_of_another_project_forged_in_the_post(maintainer_client, upstream, other_project, cluster_a):
    other_env = env_services.environment_create(project=other_project, name="o", slug="o", cluster=cluster_a, namespace="o-ns")
    post(maintainer_client, "source", source_type="promote")
    response = post(maintainer_client, "source_env", hx=True, source_env=other_env.pk)
    assert response.status_code == 200
    assert "Pick one of the environments listed." in errors_of(response, "source_env")
    assert "other" not in errors_of(response, "source_env")


def test_source_environment_cannot_be_the_target(maintainer_client, upstream, prod):
    post(maintainer_client, "source", source_type="promote")
    response = post(maintainer_client, "source_env", hx=True, source_env=prod.pk)
    assert "You can't promote into the environment you promote from" in errors_of(response, "source_env")


def test_source_environment_without_deployments_is_refused(maintainer_client, dev_web, staging, prod):
    post(maintainer_client, "source", source_type="promote")
    response = post(maintainer_client, "source_env", hx=True, source_env=staging.pk)
    assert "has no deployment to promote from" in errors_of(response, "source_env")


def test_source_resources_are_the_deployments_with_what_they_run(maintainer_client, upstream):
    post(maintainer_client, "source", source_type="promote")
    body = html(post(maintainer_client, "source_env", hx=True, source_env=upstream.environment.pk))
    assert re.findall(r'name="promote_from" value="(\d+)"', body) == [str(upstream.pk)]  # not the cronjob
    assert digest(2)[7:19] in body and "just now" in body


def test_source_resource_must_be_chosen(maintainer_client, upstream):
    post(maintainer_client, "source", source_type="promote")
    post(maintainer_client, "source_env", source_env=upstream.environment.pk)
    response = post(maintainer_client, "source_resource", hx=True)
    assert "Pick the resource to promote from." in errors_of(response, "promote_from")


def test_source_resource_that_is_not_a_deployment_is_refused(maintainer_client, upstream):
    cronjob = Resource.objects.get(name="nightly")
    post(maintainer_client, "source", source_type="promote")
    post(maintainer_client, "source_env", source_env=upstream.environment.pk)
    response = post(maintainer_client, "source_resource", hx=True, promote_from=cronjob.pk)
    assert "only resources that produce images" in errors_of(response, "promote_from")


def test_source_resource_of_another_project_or_environment_forged_in_the_post(maintainer_client, upstream, other_project, cluster_a):
    other_env = env_services.environment_create(project=other_project, name="o", slug="o", cluster=cluster_a, namespace="o-ns")
    foreign = env_services.resource_create(environment=other_env, name="web", source_type="image", image="r.example.com/o/web:1")
    staging_web = Resource.objects.get(environment__slug="staging")
    post(maintainer_client, "source", source_type="promote")
    post(maintainer_client, "source_env", source_env=upstream.environment.pk)
    for forged in (foreign.pk, staging_web.pk, 999999):
        response = post(maintainer_client, "source_resource", hx=True, promote_from=forged)
        assert response.status_code == 200
        assert "Pick one of the resources listed" in errors_of(response, "promote_from")


def test_binding_must_be_chosen(maintainer_client, upstream):
    response = promote_until_config(maintainer_client, upstream, binding="", hx=True)
    assert "Choose Track latest or Pin to digest." in errors_of(response, "binding")


@pytest.mark.parametrize("bad", ["", "sha256:abc", "sha256:" + "A" * 64, "md5:" + "a" * 64, digest(1) + "\n0"])
def test_a_pin_needs_a_well_formed_digest(maintainer_client, upstream, bad):
    response = promote_until_config(maintainer_client, upstream, binding="pin_digest", pinned=bad, hx=True)
    assert "Step 4 of 6" in html(response)
    assert "digest" in errors_of(response, "pinned_digest")


def test_the_binding_step_offers_the_upstreams_recent_digests(maintainer_client, upstream):
    post(maintainer_client, "source", source_type="promote")
    post(maintainer_client, "source_env", source_env=upstream.environment.pk)
    body = html(post(maintainer_client, "source_resource", hx=True, promote_from=upstream.pk))
    assert re.findall(r'name="digest_pick" value="([^"]+)"', body)[:2] == [digest(2), digest(1)]
    assert "follows every image" in body.lower() or "Follows every image" in body
    # Picking from the list without typing pins the picked digest.
    response = post(maintainer_client, "binding", hx=True, binding="pin_digest", pinned_digest="", digest_pick=digest(1))
    assert "Step 5 of 6" in html(response)


def test_the_digest_field_is_checked_as_you_type(maintainer_client, prod, members):
    check = "/projects/shop/envs/prod/new-resource/check-digest/"
    response = maintainer_client.post(check, {"pinned_digest": "sha256:abc"}, **htmx("pinned_digest-errors"))
    assert response.status_code == 200 and 'id="pinned_digest-errors"' in html(response)
    assert "64 lower-case hex" in html(response)
    response = maintainer_client.post(check, {"pinned_digest": digest(1)}, **htmx("pinned_digest-errors"))
    assert "valid digest" in html(response)
    assert maintainer_client.post(check, {"pinned_digest": ""}).status_code == 200


@pytest.mark.parametrize("field, value, message", [
    ("name", "", "Name must be"),
    ("name", "Web_1", "Name must be"),
    ("ports", "eighty", "Couldn't read"),
    ("ports", "70000", "1 to 65535"),
    ("replicas", "many", "whole number"),
    ("replicas", "5000", "0 to 1000"),
    ("ingress_host", "Not A Host", "Ingress host"),
    ("env-0-name", "1BAD", "letters, digits"),
    ("env-0-name", "", "has a value but no name"),
])
def test_config_bad_input_is_shown_next_to_its_field(maintainer_client, upstream, field, value, message):
    promote_until_config(maintainer_client, upstream)
    response = post(maintainer_client, "config", hx=True, **{**CONFIG, field: value})
    target = "env" if field.startswith("env-") else field
    assert message in errors_of(response, target), errors_of(response, target)
    assert f'aria-describedby="{target}-errors' in html(response) or target == "env"


def test_config_refuses_a_duplicate_name(maintainer_client, upstream, make_resource, prod):
    make_resource(prod, "web", upstream=upstream, binding=Binding.PIN_DIGEST, pinned=digest(1))
    promote_until_config(maintainer_client, upstream)
    response = post(maintainer_client, "config", hx=True, **CONFIG)
    assert "A resource named web already exists in prod." in errors_of(response, "name")
    assert 'aria-invalid="true"' in html(response)


def test_create_rechecks_everything_and_returns_to_the_step_at_fault(maintainer_client, upstream, make_resource, prod):
    promote_until_config(maintainer_client, upstream)
    post(maintainer_client, "config", **CONFIG)
    make_resource(prod, "web", upstream=upstream)  # someone else took the name meanwhile
    response = post(maintainer_client, "review", action="create", hx=True)
    assert "Step 5 of 6: Configuration" in html(response)
    assert "already exists" in errors_of(response, "name")


def test_an_unknown_step_starts_over(maintainer_client, prod, members):
    response = post(maintainer_client, "nonsense", hx=True)
    assert "Choose Image or Promote" in html(response)


# --- roles --------------------------------------------------------------------------------------


def test_a_viewer_cannot_create(viewer_client, upstream, prod, dev):
    assert viewer_client.get(url("dev")).status_code == 403
    assert post(viewer_client, "source", env="dev", source_type="image").status_code == 403
    assert "+ Create Resource" not in html(viewer_client.get("/projects/shop/envs/dev/"))


def test_a_developer_cannot_create_in_a_protected_environment(developer_client, upstream, prod):
    assert developer_client.get(url("prod")).status_code == 403
    promote_response = post(developer_client, "source", env="prod", source_type="promote")
    assert promote_response.status_code == 403
    assert "+ Create Resource" not in html(developer_client.get("/projects/shop/envs/prod/"))
    assert "+ Create Resource" in html(developer_client.get("/projects/shop/envs/staging/"))


def test_a_developer_creates_a_track_latest_resource_in_staging(developer_client, upstream, staging):
    post(developer_client, "source", env="staging", source_type="promote")
    post(developer_client, "source_env", env="staging", source_env=upstream.environment.pk)
    post(developer_client, "source_resource", env="staging", promote_from=upstream.pk)
    post(developer_client, "binding", env="staging", binding="track_latest")
    post(developer_client, "config", env="staging", name="web2", ports="8080", replicas="1")
    response = post(developer_client, "review", env="staging", action="create")
    assert response.status_code == 302
    assert Resource.objects.get(environment=staging, name="web2").binding == Binding.TRACK_LATEST


def test_a_non_member_gets_404(outsider_client, prod):
    assert outsider_client.get(url()).status_code == 404
    assert post(outsider_client, "source", source_type="image").status_code == 404
    assert outsider_client.post(url() + "check-digest/", {"pinned_digest": "x"}).status_code == 404


def test_wizard_queries_do_not_grow_with_resources(maintainer_client, upstream, make_resource, dev, django_assert_max_num_queries):
    post(maintainer_client, "source", source_type="promote")
    post(maintainer_client, "source_env", source_env=dev.pk)
    for i in range(30):
        make_resource(dev, f"svc-{i}")
    with django_assert_max_num_queries(12):
        response = post(maintainer_client, "source_env", hx=True, source_env=dev.pk)
    assert html(response).count('name="promote_from"') == 31


def test_a_resource_named_new_keeps_its_own_page(client, maintainer, dev, make_resource):
    # The wizard lives at new-resource/, so no resource name can shadow it.
    make_resource(dev, "new")
    client.force_login(maintainer)
    response = client.get("/projects/shop/envs/dev/resources/new/")
    assert response.status_code == 200
    assert response.context["resource"].name == "new"
    assert "environments/resource_detail.html" in [t.name for t in response.templates]


def test_an_abandoned_wizard_leaves_no_secret_in_plain_text(maintainer_client, upstream, prod):
    from django.contrib.sessions.models import Session

    promote_until_config(maintainer_client, upstream, binding="pin_digest", pinned=digest(1))
    post(maintainer_client, "config", **CONFIG)
    stored = Session.objects.get(session_key=maintainer_client.session.session_key).session_data
    decoded = str(maintainer_client.session.get("resource_wizards"))
    assert "s3cret-value" not in stored and "postgres://u:p@db/prod" not in stored
    assert "s3cret-value" not in decoded and "postgres://u:p@db/prod" not in decoded
    assert "MODE" in decoded  # plain values are kept as typed
    # Finishing the wizard still writes the secret values.
    post(maintainer_client, "review", action="create")
    created = Resource.objects.get(environment=prod, name="web")
    assert created.database_url == "postgres://u:p@db/prod"
    assert EnvVar.objects.get(resource=created, name="API_KEY").value == "s3cret-value"


def test_a_developer_is_told_at_the_binding_that_a_pin_is_the_maintainers(developer_client, upstream, staging):
    promote_until_config(developer_client, upstream, binding="pin_digest", pinned=digest(1), env="staging")
    post(developer_client, "config", env="staging", **{**CONFIG, "name": "api", "database_url": ""})
    response = post(developer_client, "review", action="create", env="staging")
    assert response.status_code == 403
    assert "You need the maintainer role in project shop to pin a digest" in errors_of(response, "binding")
    assert not Resource.objects.filter(environment=staging, name="api").exists()
