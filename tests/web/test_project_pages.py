"""Your projects, and a project's pipeline."""

import pytest
from django.db import connection

from environments.models import Binding, Resource
from tests.fixtures.domain import digest
from tests.fixtures.web import htmx, set_status


def test_it_lists_only_your_projects_with_your_role(developer_client, project, other_project):
    html = developer_client.get("/").content.decode()
    assert "Shop" in html and "Other" not in html
    assert "developer" in html


def test_it_shows_an_empty_list_to_a_user_without_projects(outsider_client, project):
    assert "not a member of any project" in outsider_client.get("/").content.decode()


def test_the_pipeline_has_environments_as_columns_in_order(maintainer_client, pipeline_world):
    response = maintainer_client.get("/projects/shop/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.index(">dev</a>") < html.index(">staging</a>") < html.index(">prod</a>")
    assert '<html lang="en">' in html and 'id="pipeline"' in html


def test_each_cell_shows_digest_binding_phase_and_how_far_behind(maintainer_client, pipeline_world):
    html = maintainer_client.get("/projects/shop/", **htmx("pipeline")).content.decode()
    assert "<html" not in html and html.lstrip().startswith("{#") is False
    assert 'id="pipeline"' in html and 'hx-trigger="every 5s"' in html
    staging = html[html.index('data-resource="staging/web"'):html.index('data-resource="prod/web"')]
    assert digest(2)[7:19] in staging and "badge track" in staging and "1 behind" in staging and "Healthy" in staging
    prod = html[html.index('data-resource="prod/web"'):]
    assert digest(1)[7:19] in prod and "badge pin" in prod and "2 behind" in prod
    assert "/projects/shop/envs/prod/resources/web/promote/" in prod and "hx-confirm" in prod


def test_a_downstream_that_runs_the_upstreams_latest_is_up_to_date(maintainer_client, pipeline_world):
    set_status(pipeline_world["staging_web"], digest(3), applied_seq=3)
    set_status(pipeline_world["prod_web"], digest(3))  # pins count by the digest they run
    html = maintainer_client.get("/projects/shop/", **htmx("pipeline")).content.decode()
    assert html.count("up to date") == 2


def test_a_pin_to_a_digest_the_upstream_never_published_says_so(maintainer_client, pipeline_world):
    set_status(pipeline_world["prod_web"], digest("elsewhere"))
    html = maintainer_client.get("/projects/shop/", **htmx("pipeline")).content.decode()
    assert "not from upstream" in html


def test_an_htmx_request_for_another_target_gets_the_full_page(maintainer_client, pipeline_world):
    html = maintainer_client.get("/projects/shop/", **htmx()).content.decode()
    assert "<html" in html


def test_a_viewer_sees_the_pipeline_without_create_or_promote(viewer_client, pipeline_world):
    html = viewer_client.get("/projects/shop/").content.decode()
    assert "new-resource/" not in html and "/promote/" not in html
    assert digest(1)[7:19] in html


def test_a_developer_can_create_in_unprotected_environments_only(developer_client, pipeline_world):
    html = developer_client.get("/projects/shop/").content.decode()
    assert "/envs/dev/new-resource/" in html and "/envs/staging/new-resource/" in html
    assert "/envs/prod/new-resource/" not in html
    assert "/promote/" not in html  # promoting is a pin change: maintainers only


@pytest.mark.parametrize("url", ["/projects/shop/", "/projects/shop/promotions/", "/projects/nope/"])
def test_a_non_member_gets_404(outsider_client, pipeline_world, url):
    assert outsider_client.get(url).status_code == 404


def test_a_superuser_sees_every_project_as_maintainer(make_user, pipeline_world, client):
    admin = make_user("root", is_superuser=True, is_staff=True)
    client.force_login(admin)
    assert "maintainer" in client.get("/").content.decode()
    assert "/promote/" in client.get("/projects/shop/").content.decode()


def build_pipeline(environments, total):
    """`total` resources over dev (image) → staging (track latest) → prod (pinned), upstreams with two artifacts."""
    from django.utils import timezone

    from environments.models import Artifact

    dev, staging, prod = environments["dev"], environments["staging"], environments["prod"]
    upstreams = -(-total // 3)
    in_staging = min(upstreams, total - upstreams)
    in_prod = total - upstreams - in_staging
    Resource.objects.bulk_create([
        Resource(environment=dev, name=f"svc-{i}", image=f"registry.example.com/shop/svc-{i}:1",
                 current_digest=digest(f"svc-{i}-2"), applied_seq=2, artifact_seq=2)
        for i in range(upstreams)
    ])
    ups = sorted(Resource.objects.filter(environment=dev), key=lambda r: int(r.name.split("-")[1]))
    now = timezone.now()
    Artifact.objects.bulk_create([
        Artifact(resource=up, sequence=seq, repository="registry.example.com/shop/" + up.name,
                 digest=digest(f"{up.name}-{seq}"), origin="api", first_published_at=now)
        for up in ups for seq in (1, 2)
    ])
    Resource.objects.bulk_create([
        Resource(environment=staging, name=up.name, source_type="promote", promote_from=up, binding=Binding.TRACK_LATEST,
                 current_digest=digest(f"{up.name}-1"), applied_seq=1)
        for up in ups[:in_staging]
    ])
    Resource.objects.bulk_create([
        Resource(environment=prod, name=up.name, source_type="promote", promote_from=up, binding=Binding.PIN_DIGEST,
                 pinned_digest=digest(f"{up.name}-1"), current_digest=digest(f"{up.name}-1"))
        for up in ups[:in_prod]
    ])
    return in_staging + in_prod  # downstreams, each one behind


# session, user, project with role, environments, resources (with subqueries), freeze windows, and for the live
# version the resources' digest with the changes awaiting approval (PostgreSQL; elsewhere these are two queries)
PIPELINE_QUERIES = 7 if connection.vendor == "postgresql" else 8


@pytest.mark.parametrize("total", [5, 200])
def test_pipeline_queries_do_not_grow_with_resources(maintainer_client, environments, members, total, django_assert_max_num_queries):
    downstreams = build_pipeline(environments, total)
    assert Resource.objects.count() == total
    with django_assert_max_num_queries(PIPELINE_QUERIES):
        response = maintainer_client.get("/projects/shop/")
    assert response.content.decode().count("1 behind") == downstreams
    with django_assert_max_num_queries(PIPELINE_QUERIES):
        maintainer_client.get("/projects/shop/", **htmx("pipeline"))
