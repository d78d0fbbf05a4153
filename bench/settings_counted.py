"""Hoist's settings plus a query counter (bench/counted), for benchmarks of Hoist at rest."""

from config.settings import *  # noqa: F401,F403
from config.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.counted"]
