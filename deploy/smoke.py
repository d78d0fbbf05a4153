"""Production smoke test: Hoist as it runs for real, end to end, on this machine.

    python deploy/smoke.py        (`make smoke`; .ci/run runs it)

gunicorn with DEBUG off and the production settings (collected static files,
secrets from the environment), PostgreSQL, the Redis broker, two `qcluster`
workers and the observer, started through `deploy/entrypoint.sh` as the
container would; a sandbox Kubernetes API and a real `docker-registry`. Then,
through the API only: a token, a cluster, a project, dev → staging → prod on
one cluster, a publish by tag (resolved through the registry), until prod
runs the new digest healthy; `/readyz` answers and `/metrics` shows the
counters moved. Exits non-zero (and prints the processes' logs) on failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.registry import free_port, seed_image  # noqa: E402

PG = os.environ.get("HOIST_SMOKE_POSTGRES", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("HOIST_SMOKE_REDIS", "redis://127.0.0.1:6379/14")
TIMEOUT_S = 90


class Smoke:
    def __init__(self):
        self.work = Path(tempfile.mkdtemp(prefix="hoist-smoke-"))
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.metrics_token = secrets.token_urlsafe(16)
        from cryptography.fernet import Fernet

        self.env = {
            **os.environ,
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "HOIST_CREDENTIALS_KEY": Fernet.generate_key().decode(),
            "DATABASE_URL": f"{PG}/hoist_smoke",
            "REDIS_URL": REDIS,
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "HOIST_METRICS_TOKEN": self.metrics_token,
            "HOIST_WEBHOOK_TOKEN": secrets.token_urlsafe(16),
            "STATIC_ROOT": str(self.work / "static"),
            "HOIST_BIND": f"127.0.0.1:{self.port}",
            "HOIST_WEB_WORKERS": "2",
            "HOIST_Q_WORKERS": "2",
            "PROMETHEUS_MULTIPROC_DIR": str(self.work / "prometheus"),
            "HOIST_LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        }
        (self.work / "prometheus").mkdir()

    # --- processes ---------------------------------------------------------------------------

    def start(self, name: str, *command: str, stdout=None) -> subprocess.Popen:
        log = open(self.work / f"{name}.log", "ab")
        child = subprocess.Popen(list(command), cwd=ROOT, env=self.env, start_new_session=True,
                                 stdout=stdout or log, stderr=log if stdout else subprocess.STDOUT, text=bool(stdout))
        self.children.append((name, child))
        return child

    def run(self, *command: str) -> None:
        subprocess.run(list(command), cwd=ROOT, env=self.env, check=True, timeout=300,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        for _, child in reversed(self.children):
            if child.poll() is None:
                try:
                    os.killpg(child.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for _, child in reversed(self.children):
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)

    def dump_logs(self) -> None:
        for path in sorted(self.work.glob("*.log")):
            print(f"--- {path.name} (last 40 lines)", file=sys.stderr)
            print("\n".join(path.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr)

    # --- the world ---------------------------------------------------------------------------

    def prepare(self) -> None:
        import psycopg
        import redis

        with psycopg.connect(f"{PG}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute("DROP DATABASE IF EXISTS hoist_smoke WITH (FORCE)")
            conn.execute("CREATE DATABASE hoist_smoke")
        redis.Redis.from_url(REDIS).flushdb()
        entry = str(ROOT / "deploy" / "entrypoint.sh")
        self.run(entry, "migrate")
        self.run(entry, "manage", "collectstatic", "--noinput")
        self.password = secrets.token_urlsafe(16)
        self.env["DJANGO_SUPERUSER_PASSWORD"] = self.password
        self.run(entry, "manage", "createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.com")
        del self.env["DJANGO_SUPERUSER_PASSWORD"]

    def start_all(self) -> None:
        sandbox = self.start("sandbox", sys.executable, "-m", "sandbox", "--port", "0", stdout=subprocess.PIPE)
        self.cluster_url = sandbox.stdout.readline().strip()
        registry = self.start("registry", sys.executable, "-m", "sandbox.registry", "--port", "0",
                              "--root", str(self.work / "registry"), "--seed", "shop/web:v1", stdout=subprocess.PIPE)
        self.registry, self.v1 = registry.stdout.readline().split()
        entry = str(ROOT / "deploy" / "entrypoint.sh")
        self.start("web", entry, "web")
        self.start("worker-1", entry, "worker")
        self.start("worker-2", entry, "worker")
        self.start("observer", entry, "observer")
        self.wait(lambda: self.ready(), "gunicorn to be ready")

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait(self, check, what: str, timeout: float = TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    # --- the scenario ------------------------------------------------------------------------

    def scenario(self) -> dict:
        token = httpx.post(f"{self.base}/api/v1/tokens/", auth=("ops", self.password), json={"name": "smoke"})
        assert token.status_code == 201, token.text
        api = httpx.Client(base_url=f"{self.base}/api/v1", headers={"Authorization": f"Bearer {token.json()['key']}"},
                           timeout=30)

        def ok(response, status=201):
            assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
            return response.json()

        ok(api.post("/clusters/", json={"name": "smoke", "slug": "smoke", "api_url": self.cluster_url,
                                        "registry": self.registry}))
        ok(api.post("/projects/", json={"slug": "shop", "name": "Shop"}))
        for position, slug in enumerate(("dev", "staging", "prod")):
            ok(api.post("/projects/shop/environments/", json={
                "name": slug, "slug": slug, "cluster": "smoke", "namespace": f"shop-{slug}", "position": position}))
        resources = "/projects/shop/environments/{env}/resources/"
        ok(api.post(resources.format(env="dev"), json={
            "name": "web", "source": {"type": "image", "image": f"{self.registry}/shop/web:v1"},
            "config": {"ports": [8080], "replicas": 2, "env": [{"name": "GREETING", "value": "hi 😀"}]}}))
        for env, upstream in (("staging", "dev"), ("prod", "staging")):
            ok(api.post(resources.format(env=env), json={
                "name": "web", "source": {"type": "promote", "environment": upstream, "resource": "web",
                                          "binding": "track_latest"}, "config": {"ports": [8080]}}))

        def runs(env: str, digest: str):
            status = ok(api.get(resources.format(env=env) + "web/"), 200)["status"]
            return status["running_digest"] == digest and status["rollout"]["state"] == "healthy"

        self.wait(lambda: runs("prod", self.v1), "prod to run v1 healthy")
        before = self.metrics()
        v2 = seed_image(f"http://{self.registry}", "shop/web", "v2", "smoke v2")
        started = time.monotonic()
        published = ok(api.post(resources.format(env="dev") + "web/artifacts/", json={"tag": "v2"}))
        assert published["digest"] == v2, published
        self.wait(lambda: runs("prod", v2), "prod to run v2 healthy")
        seconds = time.monotonic() - started
        history = ok(api.get("/projects/shop/promotions/?environment=prod"), 200)["results"]
        assert history[0]["status"] == "healthy" and history[0]["to_digest"] == v2, history[0]
        after = self.wait(lambda: self._moved(before), "/metrics to show the promotions")
        return {"publish_to_prod_healthy_s": round(seconds, 2),
                "healthy_promotions": after['hoist_promotions{reason="track_latest",status="healthy"}']}

    def metrics(self) -> dict[str, float]:
        response = httpx.get(f"{self.base}/metrics", headers={"Authorization": f"Bearer {self.metrics_token}"}, timeout=10)
        assert response.status_code == 200, response.text
        values = {}
        for line in response.text.splitlines():
            if line and not line.startswith("#"):
                name, _, number = line.rpartition(" ")
                values[name] = float(number)
        return values

    def _moved(self, before: dict) -> dict | None:
        after = self.metrics()
        key = 'hoist_promotions{reason="track_latest",status="healthy"}'
        registry_calls = sum(v for k, v in after.items() if k.startswith("hoist_registry_requests_total"))
        if after.get(key, 0) >= before.get(key, 0) + 2 and registry_calls > 0:
            return after
        return None


def main() -> int:
    for tool in ("docker-registry",):
        if shutil.which(tool) is None:
            print(f"smoke: {tool} is not installed", file=sys.stderr)
            return 2
    smoke = Smoke()
    try:
        smoke.prepare()
        smoke.start_all()
        figures = smoke.scenario()
        print(f"smoke: passed {figures}")
        return 0
    except Exception as exc:
        print(f"smoke: FAILED: {exc}", file=sys.stderr)
        smoke.dump_logs()
        return 1
    finally:
        smoke.stop()
        shutil.rmtree(smoke.work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
