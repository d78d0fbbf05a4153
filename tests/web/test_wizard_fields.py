"""The Create Resource wizard shows a field only when it applies: the pin's digest (and picker)
with Pin to digest, track latest's follow and soak settings with Track latest. As the server
renders them; static/js/hoist.js keeps them in step as you choose, and without JavaScript
hoist.css shows the hidden ones, each saying when it applies. Also what focus and Enter need:
the step's heading to focus, and Next as the form's first submit button."""

import re

import pytest

from environments import services as env_services
from environments.models import Resource
from tests.fixtures.domain import digest
from tests.fixtures.web import htmx

WIZ = "fields-wizard-1"
URL = "/projects/shop/envs/{env}/new-resource/"

pytestmark = pytest.mark.django_db


def post(client, step, action="next", env="prod", hx=True, **fields):
    return client.post(URL.format(env=env), {"wizard": WIZ, "step": step, "action": action, **fields}, **(htmx("wizard") if hx else {}))


def show(client, step, env="prod"):
    return client.get(URL.format(env=env), {"wizard": WIZ, "step": step}).content.decode()


@pytest.fixture
def upstream(dev_web):
    env_services.artifact_publish(resource=dev_web, digest=digest(1), tag="1.1")
    Resource.objects.filter(pk=dev_web.pk).update(current_digest=digest(1), applied_seq=1)
    dev_web.refresh_from_db()
    return dev_web


def to_binding(client, upstream, env="prod"):
    post(client, "source", source_type="promote", env=env)
    post(client, "source_env", source_env=upstream.environment.pk, env=env)
    return post(client, "source_resource", promote_from=upstream.pk, env=env).content.decode()


PIN_FIELDS = re.compile(r'<div class="when" id="pin-fields" data-show-when="binding=pin_digest"( hidden)?>')


def test_the_digest_is_hidden_until_pin_to_digest_is_chosen(maintainer_client, upstream):
    body = to_binding(maintainer_client, upstream)
    assert PIN_FIELDS.search(body).group(1) == " hidden"  # nothing chosen yet
    post(maintainer_client, "binding", action="back", binding="track_latest")
    assert PIN_FIELDS.search(show(maintainer_client, "binding")).group(1) == " hidden"
    post(maintainer_client, "binding", action="back", binding="pin_digest")
    body = show(maintainer_client, "binding")
    assert PIN_FIELDS.search(body).group(1) is None
    assert 'name="digest_pick"' in body  # the picker is inside it too
    picker = body.index('name="digest_pick"')
    assert PIN_FIELDS.search(body).end() < picker < body.rindex("</form>")


def test_a_pin_without_a_digest_shows_the_field_with_its_error(maintainer_client, upstream):
    """Without JavaScript (and a browser too old for hoist.css's fallback) choosing Pin posts, and
    the step comes back with the digest field shown and asking for the digest."""
    to_binding(maintainer_client, upstream)
    body = post(maintainer_client, "binding", binding="pin_digest", pinned_digest="").content.decode()
    assert PIN_FIELDS.search(body).group(1) is None and "Paste the digest to pin" in body


def test_a_digest_left_in_the_hidden_field_is_ignored_with_track_latest(maintainer_client, upstream, prod):
    to_binding(maintainer_client, upstream)
    response = post(maintainer_client, "binding", binding="track_latest", pinned_digest="sha256:typed-then-switched")
    assert "Step 5 of 6: Configuration" in response.content.decode()


def test_track_settings_show_only_for_track_latest(maintainer_client, upstream):
    to_binding(maintainer_client, upstream)
    body = post(maintainer_client, "binding", binding="track_latest").content.decode()
    assert 'name="follow"' in body and 'name="soak_seconds"' in body and 'name="progress_deadline_seconds"' in body
    post(maintainer_client, "config", action="back", name="web", follow="published", soak_seconds="90")
    body = post(maintainer_client, "binding", binding="pin_digest", pinned_digest=digest(1)).content.decode()
    assert "Step 5 of 6: Configuration" in body
    assert 'name="follow"' not in body and 'name="soak_seconds"' not in body and 'name="progress_deadline_seconds"' in body


def test_a_pinned_resource_is_created_with_the_default_track_settings(maintainer_client, upstream, prod):
    to_binding(maintainer_client, upstream)
    post(maintainer_client, "binding", binding="track_latest")
    post(maintainer_client, "config", action="back", name="web", replicas="1", follow="published", soak_seconds="nope")
    post(maintainer_client, "binding", binding="pin_digest", pinned_digest=digest(1))
    # The config step of a pin has no soak field: its earlier bad value neither blocks nor is saved.
    body = post(maintainer_client, "config", name="web", replicas="1").content.decode()
    assert "Step 6 of 6: Review" in body and "Follows" not in body
    post(maintainer_client, "review", action="create")
    created = Resource.objects.get(environment=prod, name="web")
    assert (created.follow, created.soak_seconds) == ("healthy", 0)


def test_an_image_source_has_no_track_settings(developer_client, dev):
    post(developer_client, "source", env="dev", source_type="image")
    body = post(developer_client, "image", env="dev", image="registry.example.com/shop/api:1.0").content.decode()
    assert "Step 3 of 4: Configuration" in body
    assert 'name="follow"' not in body and 'name="soak_seconds"' not in body and 'name="rollback_on_failure"' in body


def test_the_review_says_what_track_latest_follows(maintainer_client, upstream):
    to_binding(maintainer_client, upstream)
    post(maintainer_client, "binding", binding="track_latest")
    body = post(maintainer_client, "config", name="web", replicas="1", follow="published", soak_seconds="30").content.decode()
    assert "Step 6 of 6: Review" in body and "what dev/web publishes, after 30 s healthy" in body


def test_each_step_heading_takes_focus_and_says_where_you_are(maintainer_client, upstream):
    body = to_binding(maintainer_client, upstream)
    assert '<h2 id="step-title" tabindex="-1" data-swap-focus>Step 4 of 6: Binding</h2>' in body
    assert "<title>Step 4 of 6: Binding · Create Resource in prod · Hoist</title>" in body  # htmx puts it on the tab
    page = show(maintainer_client, "binding")
    assert "<title>Step 4 of 6: Binding · Create Resource in prod · Hoist</title>" in page
    assert page.count("<title>") == 1  # the full page's own, not the fragment's


def test_add_variables_focuses_the_first_empty_row(maintainer_client, upstream):
    to_binding(maintainer_client, upstream)
    post(maintainer_client, "binding", binding="track_latest")
    body = post(maintainer_client, "config", action="add_env", name="web", **{"env-0-name": "MODE", "env-0-value": "x"}).content.decode()
    assert re.search(r'id="id_env-1-name"[^>]*data-swap-focus', body) and body.count("data-swap-focus") == 1


def test_enter_in_a_field_means_next(maintainer_client, upstream):
    to_binding(maintainer_client, upstream)
    body = post(maintainer_client, "binding", binding="track_latest").content.decode()
    first_submit = re.search(r'<button type="submit" name="action" value="(\w+)"[^>]*>', body)
    assert first_submit.group(1) == "next" and 'tabindex="-1" aria-hidden="true"' in first_submit.group(0)
    assert body.index(first_submit.group(0)) < body.index('value="add_env"')


def test_a_history_restore_gets_the_whole_page(maintainer_client, upstream):
    """The Back button, once htmx's history cache has forgotten the step, asks for the page again."""
    to_binding(maintainer_client, upstream)
    response = maintainer_client.get(URL.format(env="prod"), {"wizard": WIZ, "step": "binding"},
                                     HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    body = response.content.decode()
    assert "<html" in body and body.count("<title>") == 1 and "Step 4 of 6: Binding" in body
