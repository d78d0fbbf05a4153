"""`python manage.py observe`: watch the clusters and feed rollouts, drift and lost work back in seconds.

Run one per installation next to the workers (`make run` starts it). A
second one is safe: it stands by and takes over when the first stops.
"""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand

from core import doors
from promotions.observer import Observer


class Command(BaseCommand):
    help = "Watch every cluster's Hoist-managed objects: rollout health, drift, lost objects and lost tasks."

    def add_arguments(self, parser):
        parser.add_argument("--tick", type=float, default=None,
                            help="Seconds between looks for unclaimed work (default HOIST_OBSERVER_TICK_S).")

    def handle(self, *args, **options):
        observer = Observer(tick_s=options["tick"])
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: observer.stop.set())
        self.stdout.write(f"observer {observer.holder}: watching (Ctrl-C to stop)")
        with doors.door("observer"):
            observer.run()
        self.stdout.write("observer stopped")
