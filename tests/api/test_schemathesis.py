"""Schemathesis fuzzes every operation in /api/schema/ against the WSGI app: no 500s, and every
response (status code, content type, headers, body) matches the schema.

Bounded (EXAMPLES per operation and mode) so it runs in well under a minute. Path
parameters are mostly the real slugs of a seeded project, so requests get past
the 404s into the serializers and services; the rest are generated.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from environments.models import Binding
from projects.models import Membership, Role
from projects.services import token_create
from tests.fixtures.domain import digest

EXAMPLES = 12
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
REAL = {"project": "shop", "resource": "web", "cluster": "cluster-a", "username": "developer", "id": "1"}
ENVIRONMENTS = ("dev", "staging", "prod")


@pytest.fixture
def wsgi_in_test_transaction():
    """Serve through the real WSGI app without closing the test's database connection.

    Django's handler closes "old" connections at each request; inside a test
    transaction that would drop it (the test client disconnects the same signal).
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield application
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def no_registry_calls(monkeypatch):
    """Publishing by tag asks a registry; the fuzzer tests Hoist's API, not DNS: resolve
    "v1" to a digest and say every other tag is unknown, as a registry would."""
    from promotions import mirror
    from promotions.registry import RegistryError

    def resolve(image):
        if image.endswith(":v1"):
            return digest("v1")
        raise RegistryError(f"tag not found in {image}", retryable=False, status=404)

    monkeypatch.setattr(mirror, "resolve", resolve)


@pytest.fixture
def seeded(members, environments, make_resource, admin_user, no_registry_calls):
    dev_web = make_resource(environments["dev"], "web", ports=[8080], env=[{"name": "K", "value": "v", "secret": True}])
    make_resource(environments["staging"], "web", upstream=dev_web)
    make_resource(environments["prod"], "web", upstream=dev_web, binding=Binding.PIN_DIGEST, pinned=digest("p"))
    from environments.services import artifact_publish

    artifact_publish(resource=dev_web, digest=digest(1))
    Membership.objects.create(project=environments["dev"].project, user=admin_user, role=Role.MAINTAINER)
    from promotions.notifications import webhook_create  # a webhook to change, test and read the log of

    webhook_create(project=environments["dev"].project, name="ci", url="https://hooks.example.com/hoist",
                   secret="s3cret-s3cret-s3cret-0123456789")
    _, key = token_create(user=admin_user, name="schemathesis")
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.django_db
def test_the_api_never_errors_and_matches_its_schema(wsgi_in_test_transaction, seeded):
    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_in_test_transaction)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:
        names = {p.name for p in operation.path_parameters}
        fixed = {name: value for name, value in REAL.items() if name in names}
        variants = [{**fixed, "environment": env} for env in ENVIRONMENTS] if "environment" in names else [fixed]
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategies = [operation.as_strategy(generation_mode=mode)]
            if fixed:
                strategies += [operation.as_strategy(generation_mode=mode, path_parameters=v) for v in variants]

            @given(case=st.one_of(*strategies), if_match=st.sampled_from([None, "*"]))
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck),
                      phases=[Phase.explicit, Phase.generate])
            def check(case, if_match):
                headers = dict(seeded)
                if if_match and "If-Match" in (case.headers or {}):
                    case.headers["If-Match"] = if_match
                # Each example starts from the seeded state (a DELETE must not starve the rest).
                with transaction.atomic():
                    response = case.call(headers=headers)
                    transaction.set_rollback(True)
                note(f"{operation.label} [{mode.value}]")
                case.validate_response(response, checks=CHECKS, headers=headers)

            check()
