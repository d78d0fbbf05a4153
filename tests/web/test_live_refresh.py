"""The pipeline's and the graph's live refresh: an unchanged page answers 204 (htmx swaps nothing)
without rendering; anything the page shows changing renders it again."""
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from environments import selectors
from environments import services
from environments.models import ChangeRequest, FreezeWindow, Resource
from tests.fixtures.web import htmx
from tests.web.test_project_pages import build_pipeline

pytestmark = pytest.mark.django_db

PAGES = [("/projects/shop/", "pipeline"), ("/projects/shop/graph/", "graph")]


def version_of(client, url):
    body = client.get(url).content.decode()
    found = re.search(r'hx-headers=\'\{"X-Hoist-Version": "([0-9a-f]+)"\}\'', body)
    assert found, "the live section carries its version"
    return found.group(1)


def refresh(client, url, target, version):
    return client.get(url, HTTP_X_HOIST_VERSION=version, **htmx(target))


@pytest.mark.parametrize("url,target", PAGES)
def test_an_unchanged_refresh_answers_204_with_few_queries(maintainer_client, environments, members, url, target,
                                                           django_assert_max_num_queries):
    build_pipeline(environments, 30)
    version = version_of(maintainer_client, url)
    # session, user, project with role, environments, freeze windows, the resources' digest with the changes
    # awaiting approval (PostgreSQL; elsewhere two queries)
    with django_assert_max_num_queries(6 if connection.vendor == "postgresql" else 7):
        response = refresh(maintainer_client, url, target, version)
    assert response.status_code == 204 and response.content == b""
    assert response["Cache-Control"] == "no-store"
    # No version (an old page), or another one: the fragment is rendered.
    assert maintainer_client.get(url, **htmx(target)).status_code == 200
    assert refresh(maintainer_client, url, target, "0" * 24).status_code == 200
    # A full page load is always rendered.
    assert maintainer_client.get(url, HTTP_X_HOIST_VERSION=version).status_code == 200


@pytest.mark.parametrize("url,target", PAGES)
def test_what_the_page_shows_changing_renders_it_again(maintainer_client, environments, members, url, target):
    build_pipeline(environments, 6)
    resource = Resource.objects.filter(environment=environments["staging"]).first()

    def changed(change) -> bool:
        before = version_of(maintainer_client, url)
        assert refresh(maintainer_client, url, target, before).status_code == 204
        change()
        response = refresh(maintainer_client, url, target, before)
        return response.status_code == 200 and f'"X-Hoist-Version": "{before}"' not in response.content.decode()

    assert changed(lambda: Resource.objects.filter(pk=resource.pk).update(phase="progressing", rollout_ready=1))
    assert changed(lambda: Resource.objects.filter(pk=resource.pk).update(message="registry unreachable"))
    assert changed(lambda: Resource.objects.filter(pk=resource.pk).update(failures_in_a_row=2))
    upstream = resource.promote_from
    # The upstream publishes (through the service, as every publish does): "1 behind" changes.
    assert changed(lambda: services.artifact_publish(resource=upstream, digest="sha256:" + "9" * 64, tag="9"))
    assert changed(lambda: ChangeRequest.objects.create(resource=resource, kind="promote", to_digest="sha256:" + "8" * 64,
                                                        required=1, source={}))
    now = timezone.now()
    assert changed(lambda: FreezeWindow.objects.create(environment=environments["prod"], name="Release", kind="once",
                                                       starts_at=now - timedelta(minutes=1), ends_at=now + timedelta(hours=1)))
    assert changed(lambda: environments["dev"].__class__.objects.filter(pk=environments["dev"].pk).update(protected=True))


def test_a_retry_countdown_is_not_served_stale(environments, members, monkeypatch):
    """"Retrying in 40 s" changes with the clock: while a backoff runs the version moves every 5 s."""
    build_pipeline(environments, 3)
    project = environments["dev"].project
    now = timezone.now()
    clock = {"now": now}
    monkeypatch.setattr(selectors.timezone, "now", lambda: clock["now"])
    calm = selectors.pipeline_version(project)
    clock["now"] = now + timedelta(seconds=30)
    assert selectors.pipeline_version(project) == calm  # nothing counts down: the clock doesn't matter

    resource = Resource.objects.filter(environment=environments["staging"]).first()
    Resource.objects.filter(pk=resource.pk).update(failures_in_a_row=1, backoff_until=now + timedelta(seconds=60))
    clock["now"] = now
    counting = selectors.pipeline_version(project)
    clock["now"] = now + timedelta(seconds=10)
    assert selectors.pipeline_version(project) != counting
    clock["now"] = now + timedelta(seconds=90)  # the backoff is over: steady again
    over = selectors.pipeline_version(project)
    clock["now"] = now + timedelta(seconds=120)
    assert selectors.pipeline_version(project) == over


def test_every_shown_field_moves_the_version(environments, members):
    """On either database (PostgreSQL digests the rows itself, SQLite here): each field a cell
    shows is part of the version, and an untouched project keeps its version."""
    build_pipeline(environments, 4)
    project = environments["dev"].project
    resource = Resource.objects.filter(environment=environments["staging"]).first()
    seen = {selectors.pipeline_version(project)}
    assert selectors.pipeline_version(project) in seen
    values = {"current_digest": "sha256:" + "7" * 64, "healthy_digest": "sha256:" + "6" * 64, "phase": "failed",
              "rollout_total": 7, "replicas": 5, "image": "registry.example.com/x:2", "artifact_seq": 40,
              "failed_digest": "sha256:" + "5" * 64, "name": "renamed"}
    for field, value in values.items():
        Resource.objects.filter(pk=resource.pk).update(**{field: value})
        version = selectors.pipeline_version(project)
        assert version not in seen, field
        seen.add(version)


def test_a_viewer_and_a_maintainer_see_different_versions(maintainer_client, viewer_client, environments, members):
    build_pipeline(environments, 3)
    assert version_of(maintainer_client, "/projects/shop/") != version_of(viewer_client, "/projects/shop/")


def test_a_waiting_message_is_shown_not_swallowed_by_a_204(rf, environments, members):
    """A message queued by an earlier request (a redirect's "promotion queued") is shown by the
    next render: the refresh renders instead of answering 204, and doesn't consume it."""
    from django.contrib import messages
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.contrib.sessions.backends.db import SessionStore
    from django_htmx.middleware import HtmxDetails

    from projects.selectors import project_access
    from web.views.projects import live_version, unchanged

    build_pipeline(environments, 3)
    maintainer = members["maintainer"]
    access = project_access(maintainer, "shop")
    request = rf.get("/projects/shop/", HTTP_X_HOIST_VERSION=live_version(access), **htmx("pipeline"))
    request.user, request.session = maintainer, SessionStore()
    request.htmx = HtmxDetails(request)
    request._messages = FallbackStorage(request)
    assert unchanged(request, access, "pipeline").status_code == 204
    messages.success(request, "prod/web pinned — promotion queued.")
    assert unchanged(request, access, "pipeline") is None
    assert [m.message for m in messages.get_messages(request)] == ["prod/web pinned — promotion queued."]
