"""`make run`: one command from a fresh clone to a working demo.

Starts two sandbox Kubernetes API servers (cluster-a, cluster-b) as child
processes, migrates, seeds the demo project, then runs the web server and the
django-q2 worker until Ctrl-C, and stops everything it started. The sandbox is
started as a separate program (`python -m sandbox`), never imported, so
product code stays unaware of it.

The ports of the sandboxes and registries are remembered in var/demo-ports.json
and reused by the next run while they are free, so what the database names
(cluster URLs, registry hosts, dev/web's image) stays right across restarts; the
registries keep their storage under var/registry/. seed_demo updates whatever
still names an old port (a remembered one was taken meanwhile).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


CLUSTERS = ("cluster-a", "cluster-b")
REGISTRIES = ("central", "cluster-a", "cluster-b")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on host:port now (SO_REUSEADDR, as the demo's servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def demo_ports(path: Path, names, host: str = "127.0.0.1") -> dict[str, int]:
    """A port for each name: the one remembered in `path` (JSON) while it is free, else a new free one.

    Writes the ports back to `path` (keeping names remembered for other uses),
    so the next run picks the same ones. The ports returned are distinct.
    """
    try:
        remembered = json.loads(path.read_text())
        if not isinstance(remembered, dict):
            remembered = {}
    except (OSError, ValueError):
        remembered = {}
    ports: dict[str, int] = {}
    for name in names:
        port = remembered.get(name)
        if type(port) is int and 0 < port < 65536 and port not in ports.values() and port_free(port, host):
            ports[name] = port
    held: list[socket.socket] = []  # open until every new port is chosen: no two names get the same one
    try:
        for name in names:
            while name not in ports:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(s)
                s.bind((host, 0))
                port = s.getsockname()[1]
                if port not in ports.values():  # not a remembered one the kernel hands out again
                    ports[name] = port
    finally:
        for s in held:
            s.close()
    ports = {name: ports[name] for name in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**remembered, **ports}, indent=2, sort_keys=True) + "\n")
    return ports


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
            with_registries = shutil.which("docker-registry") is not None
            names = list(CLUSTERS) + ([f"registry-{name}" for name in REGISTRIES] if with_registries else [])
            ports = demo_ports(var / "demo-ports.json", names)
            clusters = {name: self._start_sandbox(name, ports[name]) for name in CLUSTERS}
            webhook_token = self._secret(var / "webhook-token")
            registries, seeded = self._start_registries(var, options["addr"], webhook_token, ports)
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
                seed += [f"--image={registries['cluster-a']}/shop/web:main"] + ([f"--pin={seeded}"] if seeded else [])
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

    def _start_sandbox(self, name: str, port: int) -> str:
        child = subprocess.Popen([sys.executable, "-m", "sandbox", "--port", str(port)], stdout=subprocess.PIPE, text=True)
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

    def _start_registries(self, var: Path, addr: str, webhook_token: str,
                          ports: dict[str, int]) -> tuple[dict[str, str], str]:
        """A central registry and one per cluster; cluster-a's notifies Hoist of pushes.

        Each keeps its storage in var/registry/<name>/ from one run to the next.
        """
        if shutil.which("docker-registry") is None:
            self.stdout.write(self.style.WARNING(
                "docker-registry is not installed (apt-get install docker-registry): running without registries; "
                "cross-cluster promotions will say that no central registry is configured."
            ))
            return {}, ""
        hosts, seeded = {}, ""
        for name in REGISTRIES:
            command = [sys.executable, "-m", "sandbox.registry", "--port", str(ports[f"registry-{name}"]),
                       "--root", str(var / "registry" / name)]
            if name == "cluster-a":
                storage = var / "registry" / name / "storage"
                if not storage.exists() or not any(storage.iterdir()):
                    # Only into an empty registry: a restart must not move shop/web:main back.
                    command += ["--seed", "shop/web:main"]
                command += ["--notify-token", webhook_token, "--notify", f"http://{addr}/hooks/registry/"]
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
