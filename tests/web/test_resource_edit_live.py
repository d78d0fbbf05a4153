"""The edit page's live "What will change" panel: the preview it posts as you type, and the fields
it shows only when they apply. The preview writes nothing and audits nothing; each field's errors
come back next to the field (out of band); no secret is ever echoed back."""

import re

from environments.models import Binding, Resource
from projects.models import AuditEntry
from promotions.models import Promotion
from tests.fixtures.domain import digest
from tests.fixtures.web import htmx

PROD = "/projects/shop/envs/prod/resources/web/edit/"
STAGING = "/projects/shop/envs/staging/resources/web/edit/"
DEV = "/projects/shop/envs/dev/resources/web/edit/"


def form(resource, **overrides):
    """The edit form as the browser posts it while you type (the panel's own post: action=preview)."""
    data = {"binding": resource.binding, "pinned_digest": resource.pinned_digest, "runtime": resource.runtime,
            "ports": "8080" if resource.ports else "", "replicas": str(resource.replicas), "ingress_host": resource.ingress_host,
            "follow": resource.follow, "soak_seconds": str(resource.soak_seconds),
            "progress_deadline_seconds": str(resource.progress_deadline_seconds), "action": "preview"}
    data.update(overrides)
    return data


def error_box(body, field):
    match = re.search(rf'<div class="errors" id="{field}-errors"[^>]*hx-swap-oob="true"[^>]*>(.*?)</div>', body, re.S)
    assert match, f"no out-of-band error box for {field}"
    return match.group(1)


def test_the_panel_is_a_polite_live_region_that_posts_a_preview_as_you_type(maintainer_client, pipeline_world):
    body = maintainer_client.get(STAGING).content.decode()
    panel = re.search(r'<div id="changes"[^>]*>', body).group(0)
    assert 'aria-live="polite"' in panel and 'hx-post="' + STAGING + '"' in panel
    assert '"action": "preview"' in panel and "input changed" in panel and "change from:closest form" in panel
    assert "change a field and the differences appear here" in body
    # Without JavaScript, Review changes posts the same preview.
    assert 'name="action" value="preview">Review changes</button>' in body


def test_it_answers_the_changes_and_writes_nothing(maintainer_client, pipeline_world):
    staging_web = pipeline_world["staging_web"]
    audits, promotions = AuditEntry.objects.count(), Promotion.objects.count()
    response = maintainer_client.post(STAGING, form(staging_web, replicas="3"), **htmx("changes"))
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body and "<form" not in body
    assert re.search(r"<th scope=\"row\">Replicas</th><td><code class=\"wrap\">2</code></td><td><code class=\"wrap\">3</code>", body)
    staging_web.refresh_from_db()
    assert staging_web.replicas == 2
    assert (AuditEntry.objects.count(), Promotion.objects.count()) == (audits, promotions)


def test_unchanged_says_nothing_changes(maintainer_client, pipeline_world):
    body = maintainer_client.post(STAGING, form(pipeline_world["staging_web"]), **htmx("changes")).content.decode()
    assert "Nothing changes." in body


def test_bad_input_comes_back_next_to_its_field_and_in_the_panel(maintainer_client, pipeline_world):
    staging_web = pipeline_world["staging_web"]
    audits = AuditEntry.objects.count()
    body = maintainer_client.post(STAGING, form(staging_web, ports="80:x", soak_seconds="-1"), **htmx("changes")).content.decode()
    assert "Couldn&#x27;t read &#x27;80:x&#x27;" in error_box(body, "ports")
    assert "Soak seconds must be a whole number" in error_box(body, "soak_seconds")
    assert error_box(body, "replicas") == ""  # a field now fine loses its old error
    assert '<a href="#id_ports">' in body and "What will change shows once these are fixed" in body
    assert '<div id="edit-errors" hx-swap-oob="true"></div>' in body  # a stale error summary goes
    assert AuditEntry.objects.count() == audits and Resource.objects.get(pk=staging_web.pk).ports == staging_web.ports


def test_only_the_fields_on_the_form_get_an_error_box(developer_client, maintainer_client, pipeline_world):
    # A developer's pinned resource has no binding, digest or track-latest fields on the form.
    body = maintainer_client.post(PROD, form(pipeline_world["prod_web"]), **htmx("changes")).content.decode()
    assert 'id="pinned_digest-errors"' in body and 'id="follow-errors"' in body and 'id="image-errors"' not in body
    body = developer_client.post(STAGING, form(pipeline_world["staging_web"]), **htmx("changes")).content.decode()
    assert 'id="binding-errors"' not in body and 'id="pinned_digest-errors"' not in body and 'id="follow-errors"' in body
    body = developer_client.post(DEV, {"image": "registry.example.com/shop/web:2.0", "ports": "8080", "replicas": "1", "action": "preview"},
                                 **htmx("changes")).content.decode()
    assert 'id="image-errors"' in body and 'id="follow-errors"' not in body and 'id="soak_seconds-errors"' not in body


def test_the_digest_box_says_what_the_check_as_you_type_says(maintainer_client, pipeline_world):
    prod_web = pipeline_world["prod_web"]
    body = maintainer_client.post(PROD, form(prod_web, pinned_digest=digest(3)), **htmx("changes")).content.decode()
    box = re.search(r'<div class="errors" id="pinned_digest-errors"[^>]*>.*?</div>', body, re.S).group(0)
    assert 'aria-live="polite"' in box and "A valid digest" in box
    body = maintainer_client.post(PROD, form(prod_web, pinned_digest="sha256:nope"), **htmx("changes")).content.decode()
    assert "64 lower-case hex" in error_box(body, "pinned_digest")


def test_secrets_are_never_echoed(maintainer_client, pipeline_world):
    staging_web = pipeline_world["staging_web"]
    data = form(staging_web, **{"env-0-name": "TOKEN", "env-0-value": "typed-s3cret", "env-0-secret": "on",
                                "database_url": "postgres://u:db-s3cret@db/x"})
    body = maintainer_client.post(STAGING, data, **htmx("changes")).content.decode()
    assert "Env TOKEN" in body and "(secret)" in body and "Database URL" in body
    assert "typed-s3cret" not in body and "db-s3cret" not in body


def test_track_latest_settings_apply_only_while_tracking(maintainer_client, pipeline_world):
    prod_web = pipeline_world["prod_web"]
    # Pinned: they are on the form for a switch to Track latest, hidden until then; typing in them changes nothing.
    body = maintainer_client.get(PROD).content.decode()
    assert re.search(r'<div class="when" id="track-fields" data-show-when="binding=track_latest" hidden>', body)
    body = maintainer_client.post(PROD, form(prod_web, soak_seconds="nope", follow="published"), **htmx("changes")).content.decode()
    assert "Nothing changes." in body and error_box(body, "soak_seconds") == ""
    # Switching to Track latest brings them in.
    body = maintainer_client.post(PROD, form(prod_web, binding=Binding.TRACK_LATEST, soak_seconds="60"), **htmx("changes")).content.decode()
    assert "Soak" in body and ">60<" in body
    body = maintainer_client.get(STAGING).content.decode()
    assert re.search(r'<div class="when" id="track-fields" data-show-when="binding=track_latest">', body)
    assert re.search(r'<div class="when" id="pin-fields" data-show-when="binding=pin_digest" hidden>', body)


def test_the_pin_fields_show_only_with_pin_to_digest(maintainer_client, pipeline_world):
    body = maintainer_client.get(PROD).content.decode()
    assert re.search(r'<div class="when" id="pin-fields" data-show-when="binding=pin_digest">', body)
    # A re-rendered form (Review changes without JavaScript) follows the binding posted.
    body = maintainer_client.post(PROD, form(pipeline_world["prod_web"], binding=Binding.TRACK_LATEST)).content.decode()
    assert re.search(r'id="pin-fields" data-show-when="binding=pin_digest" hidden>', body)
    assert re.search(r'id="track-fields" data-show-when="binding=track_latest">', body)


def test_an_image_source_has_no_track_latest_settings(developer_client, pipeline_world):
    body = developer_client.get(DEV).content.decode()
    assert 'name="follow"' not in body and 'name="soak_seconds"' not in body and 'name="progress_deadline_seconds"' in body
    dev_web = pipeline_world["dev_web"]
    Resource.objects.filter(pk=dev_web.pk).update(soak_seconds=120)  # set through the API, say
    body = developer_client.post(DEV, {"image": dev_web.image, "ports": "8080", "replicas": "1", "action": "preview"},
                                 **htmx("changes")).content.decode()
    assert "Soak" not in body  # not posted, so not changed


def test_a_developer_sees_track_settings_only_on_a_tracking_resource(developer_client, pipeline_world):
    body = developer_client.get(STAGING).content.decode()
    assert 'id="track-fields">' in body and 'data-show-when' not in body


def test_focus_after_a_form_swap(maintainer_client, pipeline_world):
    """Review changes (HTMX) focuses the panel's heading; Add variables the first empty row."""
    staging_web = pipeline_world["staging_web"]
    body = maintainer_client.post(STAGING, form(staging_web, replicas="4"), **htmx("edit-form")).content.decode()
    assert '<h2 id="changes-h" tabindex="-1" data-swap-focus>' in body
    body = maintainer_client.post(STAGING, form(staging_web, action="add_env", **{"env-0-name": "MODE", "env-0-value": "x"}),
                                  **htmx("edit-form")).content.decode()
    assert 'id="id_env-1-name" name="env-1-name" value="" class="mono" autocomplete="off" spellcheck="false" data-swap-focus' in body
    assert body.count("data-swap-focus") == 1


def test_enter_in_a_field_reviews_rather_than_adding_variables(maintainer_client, pipeline_world):
    body = maintainer_client.get(STAGING).content.decode()
    first_submit = re.search(r'<button type="submit" name="action" value="(\w+)"', body).group(1)
    assert first_submit == "preview"
