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
    """Each test sees the breakers' rows as the test left them, not what this process
    remembered from an earlier test (promotions.guard keeps healthy hosts in memory)."""
    from promotions import guard

    guard._clean.clear()
    yield
    guard._clean.clear()
