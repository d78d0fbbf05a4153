pytest_plugins = ["tests.fixtures.sandbox", "tests.fixtures.registry", "tests.fixtures.domain"]
