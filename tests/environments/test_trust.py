"""Trust boundaries (issue 11): a secret stays secret, pins are the maintainer's from the start,
bad credentials settings and kubeconfigs are refused clearly."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from environments import checks, rules, services
from environments.models import Binding, EnvVar, SourceType
from tests.fixtures.api import api_client_for, resource_url
from tests.fixtures.domain import digest

MESSAGE = "Give API_KEY a new value to make it non-secret: a saved secret is never shown again."


@pytest.fixture
def web(dev, make_resource):
    return make_resource(dev, "web", image="registry.example.com/shop/web:1", ports=[8080],
                         env=[{"name": "API_KEY", "value": "s3cret", "secret": True}])


def test_the_service_refuses_to_reveal_a_secret(web):
    with pytest.raises(ValidationError) as refused:
        services.resource_update(resource=web, env=[{"name": "API_KEY", "value": None, "secret": False}])
    assert refused.value.message_dict["env"] == [MESSAGE]
    assert EnvVar.objects.get(resource=web).secret
    services.resource_update(resource=web, env=[{"name": "API_KEY", "value": "public", "secret": False}])
    assert (EnvVar.objects.get(resource=web).value, EnvVar.objects.get(resource=web).secret) == ("public", False)


def test_the_api_refuses_it_too(web, dev, developer):
    response = api_client_for(developer).patch(
        resource_url(dev, "web"), {"config": {"env": [{"name": "API_KEY", "value": None, "secret": False}]}},
        format="json", HTTP_IF_MATCH="*")
    assert response.status_code == 400 and MESSAGE in str(response.json())
    assert EnvVar.objects.get(resource=web).secret


def test_the_admin_refuses_it_too(web, admin_client):
    var = EnvVar.objects.get(resource=web)
    data = {
        "environment": web.environment_id, "name": "web", "kind": "deployment", "source_type": "image",
        "image": web.image, "promote_from": "", "binding": "", "pinned_digest": "", "runtime": "", "ports": "[8080]",
        "replicas": "1", "ingress_host": "", "database_url": "", "schedule": "",
        "env_vars-TOTAL_FORMS": "1", "env_vars-INITIAL_FORMS": "1", "env_vars-MIN_NUM_FORMS": "0",
        "env_vars-MAX_NUM_FORMS": "1000", "env_vars-0-id": var.pk, "env_vars-0-resource": web.pk,
        "env_vars-0-name": "API_KEY", "env_vars-0-value": "", "env_vars-0-secret": "",
    }
    response = admin_client.post(reverse("admin:environments_resource_change", args=[web.pk]), data, follow=True)
    assert MESSAGE in response.content.decode()
    var.refresh_from_db()
    assert (var.value, var.secret) == ("s3cret", True)  # neither revealed nor erased


def test_a_developer_cannot_create_a_pinned_resource(dev_web, staging, developer, maintainer):
    arguments = dict(environment=staging, name="pinned", source_type=SourceType.PROMOTE, promote_from=dev_web,
                     binding=Binding.PIN_DIGEST, pinned_digest=digest(1))
    with pytest.raises(PermissionDenied, match="maintainer role in project shop to pin a digest"):
        services.resource_create(actor=developer, **arguments)
    # Track latest stays a developer's choice in an unprotected environment; a pin is the maintainer's.
    services.resource_create(actor=developer, **{**arguments, "name": "tracking", "binding": Binding.TRACK_LATEST,
                                                  "pinned_digest": ""})
    assert services.resource_create(actor=maintainer, **arguments).pinned_digest == digest(1)


@pytest.mark.parametrize("kubeconfig", [
    "clusters: [{name: a, cluster: {server: 'https://k'}}]\nusers: {name: x}",
    "clusters: [{name: a, cluster: {server: 'https://k'}}]\nusers: [x, y]",
    "clusters: [{name: a, cluster: 'https://k'}]",
])
def test_a_kubeconfig_of_the_wrong_shape_is_a_clear_refusal(kubeconfig):
    with pytest.raises(ValidationError) as refused:
        rules.check_kubeconfig(kubeconfig)
    assert "kubeconfig" in refused.value.message_dict


def test_an_invalid_credentials_key_is_a_system_check_error(settings):
    settings.HOIST_CREDENTIALS_KEYS = ["not-a-fernet-key"]
    assert [error.id for error in checks.credentials_keys()] == ["hoist.E001"]
    from cryptography.fernet import Fernet

    settings.HOIST_CREDENTIALS_KEYS = [Fernet.generate_key().decode()]
    assert checks.credentials_keys() == []
