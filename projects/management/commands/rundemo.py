"""`make run`: one command from a fresh clone to a working demo.

Starts two sandbox Kubernetes API servers (cluster-a, cluster-b) as child
processes, migrates, seeds the demo project, then runs the web server and the
django-q2 worker until Ctrl-C, and stops everything it started. The sandbox is
started as a separate program (`python -m sandbox`), never imported, so
product code stays unaware of it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run the demo: sandbox clusters, registries (when installed), web server and worker."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--no-worker", action="store_true", help="Don't start the django-q2 worker.")

    def handle(self, *args, **options):
        self.children: list[subprocess.Popen] = []
        var = Path(settings.BASE_DIR) / "var"
        var.mkdir(exist_ok=True)
        try:
            call_command("migrate", verbosity=0)
            clusters = {name: self._start_sandbox(name) for name in ("cluster-a", "cluster-b")}
            registries = self._start_registries(var)
            seed = ["--cluster=" + f"{name}={url}" for name, url in clusters.items()]
            seed += ["--registry=" + f"{name}={host}" for name, host in registries.items() if name != "central"]
            password_file = var / "demo-admin-password"
            if password_file.exists():
                seed.append("--password=" + password_file.read_text().strip())
            if "central" in registries:
                seed.append(f"--image={registries['cluster-a']}/shop/web@sha256:{'5e' * 32}")
            env = dict(os.environ)
            if "central" in registries:
                env["HOIST_CENTRAL_REGISTRY"] = registries["central"]
            out = subprocess.run([sys.executable, "manage.py", "seed_demo", *seed], env=env, check=True,
                                 capture_output=True, text=True).stdout
            login = out.strip().splitlines()[-1]
            password_file.write_text(login.split(" / ", 1)[1] + "\n")
            password_file.chmod(0o600)
            self.children.append(subprocess.Popen([sys.executable, "manage.py", "runserver", options["addr"], "--noreload"], env=env))
            if not options["no_worker"]:
                self.children.append(subprocess.Popen([sys.executable, "manage.py", "qcluster"], env=env))
            self.stdout.write(self.style.SUCCESS(
                f"\nHoist is running: http://{options['addr']}/   ({login})\n"
                + "".join(f"  {name}: {url}\n" for name, url in clusters.items())
                + "".join(f"  registry {name}: {host}\n" for name, host in registries.items())
                + "Ctrl-C stops everything.\n"
            ))
            self._wait()
        except KeyboardInterrupt:
            pass
        finally:
            self._stop_all()

    def _start_sandbox(self, name: str) -> str:
        child = subprocess.Popen([sys.executable, "-m", "sandbox", "--port", "0"], stdout=subprocess.PIPE, text=True)
        self.children.append(child)
        line = child.stdout.readline().strip()
        if not line.startswith("http"):
            raise CommandError(f"sandbox {name} did not start: {line!r}")
        return line

    def _start_registries(self, var: Path) -> dict[str, str]:
        if shutil.which("docker-registry") is None:
            self.stdout.write(self.style.WARNING(
                "docker-registry is not installed (apt-get install docker-registry): no registries, "
                "so cross-cluster promotions will fail until one is configured."
            ))
            return {}
        hosts = {}
        for name in ("central", "cluster-a", "cluster-b"):
            child = subprocess.Popen([sys.executable, "-m", "sandbox.registry", "--port", "0", "--root", str(var / "registry" / name)],
                                     stdout=subprocess.PIPE, text=True)
            self.children.append(child)
            line = child.stdout.readline().strip()
            if not line:
                raise CommandError(f"registry {name} did not start")
            hosts[name] = line
        return hosts

    def _wait(self) -> None:
        while True:
            for child in self.children:
                if child.poll() is not None:
                    raise CommandError(f"{' '.join(child.args[:4])} exited with {child.returncode}")
            time.sleep(0.5)

    def _stop_all(self) -> None:
        for child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
