pytest_plugins = [
    "tests.fixtures.sandbox",
    "tests.fixtures.registry",
    "tests.fixtures.domain",
    "tests.fixtures.api",
    "tests.fixtures.web",
]


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_breaker_memo():
    """Each test sees the breakers' and registries' rows as the test left them, not what this
    process remembered from an earlier test (promotions.guard keeps healthy hosts in memory,
    promotions.limits each host's limits and whether its row exists)."""
    from promotions import guard, limits

    guard._clean.clear()
    limits.forget()
    yield
    guard._clean.clear()
    limits.forget()
