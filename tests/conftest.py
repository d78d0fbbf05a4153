pytest_plugins = [
    "tests.fixtures.sandbox",
    "tests.fixtures.registry",
    "tests.fixtures.domain",
    "tests.fixtures.api",
    "tests.fixtures.web",
]
