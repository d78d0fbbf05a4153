"""One error body for everything: parse errors, media types, huge bodies, unknown endpoints, the schema."""

import json

import pytest
from django.test import override_settings

from tests.fixtures.api import assert_error, resource_url, url


def test_malformed_json_is_400(api, dev, dev_web):
    for raw in (b"{", b"{\"name\": NaN}", b"\xff\xfe", b"[" * 100_000):
        response = api["developer"].generic("POST", resource_url(dev), raw, content_type="application/json")
        body = assert_error(response, 400)
        assert body["code"] == "parse_error"


@pytest.mark.parametrize("payload", [[], "x", 5, None])
def test_a_body_that_is_not_an_object_is_400(api, dev, payload):
    response = api["developer"].generic("POST", resource_url(dev), json.dumps(payload), content_type="application/json")
    assert_error(response, 400)


def test_other_media_types_are_415(api, dev):
    response = api["developer"].post(resource_url(dev), "name=x", content_type="application/x-www-form-urlencoded")
    assert assert_error(response, 415)["code"] == "unsupported_media_type"


def test_huge_bodies_are_413(api, dev):
    huge = {"name": "api", "source": {"type": "image", "image": "a/b:1"}, "config": {"runtime": "x" * 3_000_000}}
    response = api["developer"].post(resource_url(dev), huge, format="json")
    assert assert_error(response, 413)["code"] == "request_too_large"


@override_settings(HOIST_API_MAX_BODY_BYTES=100)
def test_the_limit_holds_without_a_content_length(api, dev):
    from core.api.parsers import JSONParser
    from core.api.errors import RequestTooLarge
    import io

    with pytest.raises(RequestTooLarge):
        JSONParser().parse(io.BytesIO(b"{" + b" " * 200 + b"}"), parser_context={"request": None})


def test_unknown_endpoints_and_methods(api, project):
    assert assert_error(api["viewer"].get("/api/v1/nothing/"), 404)["detail"] == "No such API endpoint."
    assert_error(api["viewer"].get("/api/nothing"), 404)
    assert assert_error(api["viewer"].put(url("projects", "shop"), {}, format="json"), 405)["code"] == "method_not_allowed"


def test_html_is_not_acceptable(api, project):
    assert_error(api["viewer"].get(url("projects"), HTTP_ACCEPT="text/html"), 406)


def test_the_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    document = schema.json()
    assert document["openapi"].startswith("3.")
    assert "/api/v1/projects/{project}/environments/{environment}/resources/{resource}/artifacts/" in document["paths"]
    patch = document["paths"]["/api/v1/projects/{project}/environments/{environment}/resources/{resource}/"]["patch"]
    assert {"200", "400", "401", "403", "404", "412", "413", "415", "428"} <= set(patch["responses"])
    assert patch["responses"]["412"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"
    assert {"tokenAuth", "cookieAuth"} <= set(document["components"]["securitySchemes"])
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method in {"get", "post", "patch", "delete"}:
                assert {"400", "401", "403", "404"} <= set(operation["responses"]), (method, path)
    assert client.get("/api/docs/").status_code == 200


def test_the_schema_generates_without_warnings():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    SchemaGenerator().get_schema(request=None, public=True)
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache


def test_nul_characters_are_refused_not_stored(api, dev, dev_web):
    body = '{"name": "api", "source": {"type": "image", "image": "a/b:1"}, "config": {"env": [{"name": "A", "value": "x\\u0000y"}]}}'
    assert_error(api["developer"].generic("POST", resource_url(dev), body, content_type="application/json"), 400)
    assert_error(api["viewer"].get(url("projects", "shop", "members", "a\x00b")), 404)
    assert_error(api["viewer"].get(url("projects", "shop", "promotions") + "?resource=a%00b"), 400, "resource")
    from rest_framework.test import APIClient
    import base64

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"vie\x00wer:pw").decode())
    assert_error(client.post(url("tokens"), {"name": "x"}, format="json"), 401)
