"""Helper fixtures for the sandbox tests (the server fixtures live in tests/fixtures/sandbox.py)."""
from __future__ import annotations

import pytest
from kubernetes import client


@pytest.fixture
def core(kube_api_client):
    return client.CoreV1Api(kube_api_client)


@pytest.fixture
def apps(kube_api_client):
    return client.AppsV1Api(kube_api_client)


@pytest.fixture
def net(kube_api_client):
    return client.NetworkingV1Api(kube_api_client)


@pytest.fixture
def ext(kube_api_client):
    return client.ApiextensionsV1Api(kube_api_client)


@pytest.fixture
def custom(kube_api_client):
    return client.CustomObjectsApi(kube_api_client)


@pytest.fixture
def ns(core):
    """A fresh namespace named 'team' (the sandbox is reset before each test)."""
    core.create_namespace({"metadata": {"name": "team"}})
    return "team"
