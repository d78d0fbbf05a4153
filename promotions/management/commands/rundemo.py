"""`make run`: one command from a fresh clone to a working demo.

Starts two sandbox Kubernetes API servers (cluster-a, cluster-b) as child
processes, migrates, seeds the demo project, then runs the web server and the
django-q2 worker until Ctrl-C, and stops everything it started. The sandbox is
started as a separate program (`python -m sandbox`), never imported, so
product code stays unaware of it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run the demo: sandbox clusters, registries (when installed), web server and worker."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--no-worker", action="store_true", help="Don't start the django-q2 worker.")

    def handle(self, *args, **options):
        self.children: list[subprocess.Popen] = []
        # SIGTERM (e.g. from a process manager) stops the children as Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt)
        var = Path(settings.BASE_DIR) / "var"
        var.mkdir(exist_ok=True)
        try:
            call_command("migrate", verbosity=0)
            clusters = {name: self._start_sandbox(name) for name in ("cluster-a", "cluster-b")}
            webhook_token = self._secret(var / "webhook-token")
            registries, seeded = self._start_registries(var, options["addr"], webhook_token)
            seed = ["--cluster=" + f"{name}={url}" for name, url in clusters.items()]
            seed += ["--registry=" + f"{name}={host}" for name, host in registries.items() if name != "central"]
            password_file = var / "demo-admin-password"
            if password_file.exists():
                seed.append("--password=" + password_file.read_text().strip())
            env = dict(os.environ)
            env["HOIST_WEBHOOK_TOKEN"] = webhook_token
            if registries:
                # dev/web follows the `main` tag of cluster-a's registry; prod is pinned
                # to the seeded digest and mirrored through the central registry.
                seed += [f"--image={registries['cluster-a']}/shop/web:main", f"--pin={seeded}"]
                env["HOIST_CENTRAL_REGISTRY"] = registries["central"]
            out = subprocess.run([sys.executable, "manage.py", "seed_demo", *seed], env=env, check=True,
                                 capture_output=True, text=True).stdout
            login = out.strip().splitlines()[-1]
            password_file.write_text(login.split(" / ", 1)[1] + "\n")
            password_file.chmod(0o600)
            self.children.append(subprocess.Popen([sys.executable, "manage.py", "runserver", options["addr"], "--noreload"], env=env))
            if not options["no_worker"]:
                self.children.append(subprocess.Popen([sys.executable, "manage.py", "qcluster"], env=env))
                # Rollout health, drift and lost work come back through the observer's watches.
                self.children.append(subprocess.Popen([sys.executable, "manage.py", "observe"], env=env))
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

    def _secret(self, path: Path) -> str:
        if not path.exists():
            path.write_text(secrets.token_urlsafe(24) + "\n")
            path.chmod(0o600)
        return path.read_text().strip()

    def _start_registries(self, var: Path, addr: str, webhook_token: str) -> tuple[dict[str, str], str]:
        """A central registry and one per cluster; cluster-a's notifies Hoist of pushes."""
        if shutil.which("docker-registry") is None:
            self.stdout.write(self.style.WARNING(
                "docker-registry is not installed (apt-get install docker-registry): running without registries; "
                "cross-cluster promotions will say that no central registry is configured."
            ))
            return {}, ""
        hosts, seeded = {}, ""
        for name in ("central", "cluster-a", "cluster-b"):
            command = [sys.executable, "-m", "sandbox.registry", "--port", "0", "--root", str(var / "registry" / name)]
            if name == "cluster-a":
                command += ["--seed", "shop/web:main", "--notify-token", webhook_token,
                            "--notify", f"http://{addr}/hooks/registry/"]
            child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            self.children.append(child)
            line = child.stdout.readline().split()
            if not line:
                raise CommandError(f"registry {name} did not start")
            hosts[name] = line[0]
            if len(line) > 1:
                seeded = line[1]
        return hosts, seeded

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
