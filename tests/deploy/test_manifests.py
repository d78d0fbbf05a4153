"""What ships Hoist: the Containerfile, the entry point, gunicorn's settings and the Kubernetes base.

No container engine or cluster here, so: the manifests are checked against the
official schemas (kubernetes_validate) and applied to the sandbox API server
where it serves the kind; the entry point and gunicorn's config are run for
real from the checkout; the image's build-time step (collectstatic with
throwaway keys) is run as the Containerfile runs it.
"""

from __future__ import annotations

import copy
import inspect
import os
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"
CONTAINERFILE = ROOT / "Containerfile"

# The oldest Kubernetes the manifests claim to work on, and the newest the schemas know.
KUBE_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
# Kinds in the base that the sandbox API server doesn't serve: validated, not applied.
# A new kind it doesn't serve must be added here on purpose.
NOT_SERVED_BY_SANDBOX = {"ServiceAccount", "Job", "PodDisruptionBudget"}
ROLES = {"web", "worker", "observer", "migrate"}
UID = 10001


# --- the Kubernetes base -------------------------------------------------------


def kustomization() -> dict:
    return yaml.safe_load((KUBE / "kustomization.yaml").read_text())


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBE.iterdir() if p.is_file() and p.name != "kustomization.yaml")


def documents() -> list[tuple[str, dict]]:
    out = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((path.name, doc))
    return out


def objects(kind: str) -> list[dict]:
    return [obj for _, obj in documents() if obj["kind"] == kind]


def the(kind: str, name: str) -> dict:
    (found,) = [obj for obj in objects(kind) if obj["metadata"]["name"] == name]
    return found


def workloads() -> list[dict]:
    return objects("Deployment") + objects("Job")


def role_of(workload: dict) -> str:
    return workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]


def doc_id(item) -> str:
    name, obj = item
    return f"{name}:{obj['kind']}/{obj['metadata']['name']}"


def test_every_file_parses_into_named_objects():
    docs = documents()
    assert docs
    assert {name for name, _ in docs} == {p.name for p in manifest_files()}, "a file with no object in it"
    for name, obj in docs:
        assert isinstance(obj, dict), name
        assert obj.get("apiVersion") and obj.get("kind") and obj.get("metadata", {}).get("name"), name
        # The namespace comes from kustomization.yaml, so an overlay can move everything at once.
        assert "namespace" not in obj["metadata"], f"{name}: set the namespace in kustomization.yaml"


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("item", documents(), ids=doc_id)
def test_every_object_validates_against_the_official_schema(item, version):
    # strict: an unknown or misspelt field fails too. Every kind here is built in
    # (SchemaNotFoundError would mean a custom resource crept into the base).
    kubernetes_validate.validate(item[1], version, strict=True)


def test_kustomization_lists_every_file_and_nothing_else():
    listed = kustomization()["resources"]
    assert len(listed) == len(set(listed)), "a file listed twice"
    assert set(listed) == {p.name for p in manifest_files()}


def test_kustomization_namespace_labels_and_image():
    k = kustomization()
    assert k["namespace"] == "hoist" == the("Namespace", "hoist")["metadata"]["name"]
    assert {"app.kubernetes.io/part-of": "hoist"} in [entry["pairs"] for entry in k["labels"]]
    assert [image["name"] for image in k["images"]] == ["hoist"]
    images = {c["image"] for w in workloads() for c in w["spec"]["template"]["spec"]["containers"]}
    assert images == {"hoist:latest"}


def test_the_crd_copy_matches_deploy_crds():
    # kustomize refuses files outside the base's folder, hence a copy; it must not drift.
    copy_ = (KUBE / "crd-imagesources.yaml").read_bytes()
    assert copy_ == (DEPLOY / "crds" / "imagesources.hoist.dev.yaml").read_bytes(), (
        "deploy/kubernetes/crd-imagesources.yaml differs from deploy/crds/imagesources.hoist.dev.yaml: "
        "cp deploy/crds/imagesources.hoist.dev.yaml deploy/kubernetes/crd-imagesources.yaml"
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize built in) not installed")
def test_kustomize_builds_the_base():
    out = subprocess.run(["kubectl", "kustomize", str(KUBE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    built = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in built) == sorted(
        (o["kind"], o["metadata"]["name"]) for _, o in documents()
    )
    cluster_scoped = {"Namespace", "CustomResourceDefinition"}
    for obj in built:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "hoist", obj["kind"]
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"]["namespace"] == "hoist", obj["kind"]
        if obj["kind"] in ("Deployment", "Job"):
            (container,) = obj["spec"]["template"]["spec"]["containers"]
            assert container["image"] == "registry.example.com/hoist:latest"
        kubernetes_validate.validate(obj, KUBE_VERSIONS[-1], strict=True)


# --- applied to the sandbox API server ------------------------------------------


def _api_prefix(api_version: str) -> str:
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


def _served(client: httpx.Client, api_version: str) -> dict:
    """kind → (plural, namespaced), from the server's discovery document."""
    response = client.get(_api_prefix(api_version))
    if response.status_code == 404:
        return {}
    response.raise_for_status()
    return {r["kind"]: (r["name"], r["namespaced"]) for r in response.json()["resources"] if "/" not in r["name"]}


def _version(obj: dict) -> str:
    # The generation where the kind has one: controllers bump the resourceVersion
    # when they write status (a Deployment rolling out), the generation only moves with the spec.
    meta = obj["metadata"]
    return f"generation {meta['generation']}" if "generation" in meta else f"resourceVersion {meta['resourceVersion']}"


def test_the_base_applies_to_the_sandbox_with_server_side_apply(sandbox):
    namespace = kustomization()["namespace"]
    first = {"Namespace": 0, "CustomResourceDefinition": 1}
    ordered = sorted((obj for _, obj in documents()), key=lambda o: first.get(o["kind"], 2))
    applied, skipped = [], set()
    with httpx.Client(base_url=sandbox.url, timeout=10) as client:

        def apply(path: str, body: dict) -> httpx.Response:
            return client.patch(
                path,
                params={"fieldManager": "test", "force": "true"},
                content=yaml.safe_dump(body).encode(),
                headers={"Content-Type": "application/apply-patch+yaml"},
            )

        for obj in ordered:
            kinds = _served(client, obj["apiVersion"])
            if obj["kind"] not in kinds:
                skipped.add(obj["kind"])
                continue
            plural, namespaced = kinds[obj["kind"]]
            body = copy.deepcopy(obj)
            name = body["metadata"]["name"]
            if namespaced:
                body["metadata"]["namespace"] = namespace  # what kustomize adds
                path = f"{_api_prefix(obj['apiVersion'])}/namespaces/{namespace}/{plural}/{name}"
            else:
                path = f"{_api_prefix(obj['apiVersion'])}/{plural}/{name}"
            response = apply(path, body)
            assert response.status_code in (200, 201), f"{obj['kind']}/{name}: {response.status_code} {response.text}"
            applied.append((path, body, _version(response.json())))

        assert skipped == NOT_SERVED_BY_SANDBOX
        assert {p for p, _, _ in applied}  # something was applied
        # Applying the same manifests again changes nothing: no field fights with defaulting.
        for path, body, version in applied:
            again = apply(path, body)
            assert again.status_code == 200, f"{path}: {again.status_code} {again.text}"
            assert _version(again.json()) == version, path
        # The ImageSource type the CRD defines is served now.
        assert "ImageSource" in _served(client, "hoist.dev/v1alpha1")


# --- the pods meet the security bar and reference what exists ---------------------


def _effective(pod: dict, container: dict, field: str):
    own = container.get("securityContext", {})
    return own[field] if field in own else pod.get("securityContext", {}).get(field)


@pytest.mark.parametrize("workload", workloads(), ids=lambda w: f"{w['kind']}/{w['metadata']['name']}")
def test_every_pod_meets_the_security_bar(workload):
    pod = workload["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == the("ServiceAccount", "hoist")["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is False
    tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    for container in pod.get("initContainers", []) + pod["containers"]:
        where = f"{workload['metadata']['name']}/{container['name']}"
        assert _effective(pod, container, "runAsNonRoot") is True, where
        assert _effective(pod, container, "runAsUser") == UID, where
        assert _effective(pod, container, "seccompProfile") == {"type": "RuntimeDefault"}, where
        own = container["securityContext"]
        assert own["readOnlyRootFilesystem"] is True, where
        assert own["allowPrivilegeEscalation"] is False, where
        assert own["capabilities"]["drop"] == ["ALL"], where
        assert "add" not in own["capabilities"], where
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) >= {"cpu", "memory"}, f"{where}: {bound}"
        # A read-only root needs somewhere to write.
        assert any(m["mountPath"] == "/tmp" and m["name"] in tmp_volumes for m in container["volumeMounts"]), where
        assert {"configMapRef": {"name": "hoist-config"}} in container["envFrom"], where
        assert {"secretRef": {"name": "hoist-secrets"}} in container["envFrom"], where


def test_each_role_runs_once_with_its_argument():
    assert sorted(role_of(w) for w in workloads()) == sorted(ROLES)
    for workload in workloads():
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert container["args"] == [role_of(workload)]
        assert "command" not in container, "the image's entry point picks the role"


def test_deployment_selectors_match_their_pods():
    for deployment in objects("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_web_pods_serve_probe_and_are_reachable():
    web = the("Deployment", "hoist-web")
    assert web["spec"]["replicas"] == 2
    (container,) = web["spec"]["template"]["spec"]["containers"]
    assert {"name": "http", "containerPort": 8000} in container["ports"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    # Requests in flight finish before the kubelet kills the pod.
    graceful = runpy.run_path(str(GUNICORN_CONF))["graceful_timeout"]
    assert web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > graceful

    pod_labels = web["spec"]["template"]["metadata"]["labels"]
    service = the("Service", "hoist-web")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    (rule,) = the("Ingress", "hoist-web")["spec"]["rules"]
    (backend,) = [p["backend"]["service"] for p in rule["http"]["paths"]]
    assert backend == {"name": "hoist-web", "port": {"name": "http"}}
    assert f"https://{rule['host']}" in the("ConfigMap", "hoist-config")["data"]["CSRF_TRUSTED_ORIGINS"].split(",")
    assert rule["host"] in the("ConfigMap", "hoist-config")["data"]["ALLOWED_HOSTS"].split(",")
    pdb = the("PodDisruptionBudget", "hoist-web")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_worker_observer_and_migrate_shapes():
    worker = the("Deployment", "hoist-worker")
    assert worker["spec"]["replicas"] == 2
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    redis = [e for e in container["env"] if e["name"] == "REDIS_URL"]
    assert redis == [{"name": "REDIS_URL", "valueFrom": {"secretKeyRef": {"name": "hoist-secrets", "key": "REDIS_URL"}}}]
    observer = the("Deployment", "hoist-observer")
    assert observer["spec"]["replicas"] == 1
    assert observer["spec"]["strategy"] == {"type": "Recreate"}
    job = the("Job", "hoist-migrate")
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")


def test_config_and_secret_templates():
    config = the("ConfigMap", "hoist-config")["data"]
    assert config["DEBUG"] == "false"
    assert config["HOIST_BEHIND_TLS_PROXY"] == "true"
    assert config["SECURE_SSL_REDIRECT"] == "false"
    assert config["HOIST_Q_WORKERS"] == "4"
    # One registry that never answers may hold this many task processes, never all of them.
    assert int(config["HOIST_REGISTRY_CONCURRENCY"]) < int(config["HOIST_Q_WORKERS"])
    assert config["LOG_LEVEL"] == "INFO"
    secret = the("Secret", "hoist-secrets")
    required = {"SECRET_KEY", "HOIST_CREDENTIALS_KEY", "DATABASE_URL", "REDIS_URL", "HOIST_WEBHOOK_TOKEN",
                "HOIST_METRICS_TOKEN"}
    assert set(secret["stringData"]) == required
    assert not set(config) & required, "a secret in the ConfigMap"
    for key, value in secret["stringData"].items():
        assert "replace-me" in value, f"{key} must be a placeholder, not a real value"
    assert the("ServiceAccount", "hoist")["automountServiceAccountToken"] is False


# --- the entry point ------------------------------------------------------------


def clean_env(**extra: str) -> dict:
    """This environment without what pytest-django or a developer's shell set for Hoist."""
    env = {k: v for k, v in os.environ.items()
           if k != "DJANGO_SETTINGS_MODULE" and not k.startswith(("HOIST_", "PROMETHEUS_", "REDIS_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
    env.update(extra)
    return env


def run_entrypoint(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ENTRYPOINT), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_entrypoint_is_an_executable_posix_script():
    assert os.stat(ENTRYPOINT).st_mode & 0o111 == 0o111
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    assert "set -eu" in ENTRYPOINT.read_text()


@pytest.mark.parametrize("args", [(), ("bogus",), ("--help",)])
def test_the_entrypoint_without_a_known_role_prints_usage_and_exits_2(args, tmp_path):
    out = run_entrypoint(*args, env=clean_env(), cwd=tmp_path)
    assert out.returncode == 2
    assert "usage:" in out.stderr and "web|worker|observer|migrate|manage" in out.stderr
    assert out.stdout == ""


@pytest.fixture
def stub_path(tmp_path):
    """A PATH whose `python` and `gunicorn` print where and how they were run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "gunicorn"):
        stub = bin_dir / name
        stub.write_text('#!/bin/sh\necho "$PWD"\necho "${0##*/}"\nfor a in "$@"; do echo "$a"; done\n')
        stub.chmod(0o755)
    return os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])


@pytest.mark.parametrize(
    "args, expected",
    [
        (["web"], ["gunicorn", "-c", str(GUNICORN_CONF), "config.wsgi:application"]),
        (["web", "--log-level", "debug"],
         ["gunicorn", "-c", str(GUNICORN_CONF), "--log-level", "debug", "config.wsgi:application"]),
        (["worker"], ["python", "manage.py", "qcluster"]),
        (["observer"], ["python", "manage.py", "observe"]),
        (["migrate"], ["python", "manage.py", "migrate", "--noinput"]),
        (["manage", "check", "--deploy"], ["python", "manage.py", "check", "--deploy"]),
        (["manage"], ["python", "manage.py"]),
    ],
)
def test_the_entrypoint_runs_each_role_from_the_app_directory(args, expected, stub_path, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = run_entrypoint(*args, env=clean_env(PATH=stub_path), cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    cwd, *command = out.stdout.splitlines()
    assert Path(cwd).resolve() == ROOT
    assert command == expected


@pytest.mark.parametrize("role, made", [("web", True), ("worker", True), ("observer", False)])
def test_the_entrypoint_makes_the_metrics_multiprocess_dir(role, made, stub_path, tmp_path):
    multiproc = tmp_path / "prometheus"
    out = run_entrypoint(role, env=clean_env(PATH=stub_path, PROMETHEUS_MULTIPROC_DIR=str(multiproc)), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert multiproc.is_dir() is made


def test_the_entrypoint_leaves_a_shared_metrics_dir_alone(stub_path, tmp_path):
    # deploy/smoke.py runs the web and two workers on one machine with one directory.
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    (multiproc / "counter_123.db").write_text("another process's counters")
    for role in ("web", "worker"):
        out = run_entrypoint(role, env=clean_env(PATH=stub_path, PROMETHEUS_MULTIPROC_DIR=str(multiproc)), cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    assert [p.name for p in multiproc.iterdir()] == ["counter_123.db"]


def test_the_entrypoint_runs_manage_check_for_real(tmp_path):
    env = clean_env(DEBUG="true", DATABASE_URL=f"sqlite:///{tmp_path / 'hoist.sqlite3'}")
    out = run_entrypoint("manage", "check", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "no issues" in out.stdout


def test_the_entrypoint_migrates_for_real(tmp_path):
    database = tmp_path / "hoist.sqlite3"
    env = clean_env(DEBUG="true", DATABASE_URL=f"sqlite:///{database}")
    out = run_entrypoint("migrate", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert database.exists()
    plan = run_entrypoint("manage", "migrate", "--check", env=env, cwd=tmp_path)
    assert plan.returncode == 0, plan.stdout + plan.stderr


# --- gunicorn's settings --------------------------------------------------------


def test_gunicorn_accepts_the_config_and_loads_the_app():
    out = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--check-config", "-c", str(GUNICORN_CONF), "config.wsgi:application"],
        env=clean_env(DEBUG="true"), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def load_gunicorn_conf(monkeypatch, **env: str) -> dict:
    for name in ("HOIST_BIND", "HOIST_WEB_WORKERS", "HOIST_WEB_THREADS", "HOIST_FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


def test_gunicorn_defaults(monkeypatch):
    conf = load_gunicorn_conf(monkeypatch)
    assert conf["bind"] == "0.0.0.0:8000"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert conf["workers"] == min(2 * cores + 1, 8)
    assert conf["worker_class"] == "gthread"
    assert conf["threads"] == 4
    assert (conf["timeout"], conf["graceful_timeout"], conf["keepalive"]) == (60, 30, 5)
    assert conf["accesslog"] == conf["errorlog"] == "-"
    assert conf["forwarded_allow_ips"] == "127.0.0.1"
    assert (conf["max_requests"], conf["max_requests_jitter"]) == (1000, 100)
    assert conf.get("worker_tmp_dir") == ("/dev/shm" if os.path.isdir("/dev/shm") else None)


def test_gunicorn_follows_the_environment(monkeypatch):
    conf = load_gunicorn_conf(monkeypatch, HOIST_BIND="127.0.0.1:9000", HOIST_WEB_WORKERS="3",
                              HOIST_WEB_THREADS="8", HOIST_FORWARDED_ALLOW_IPS="10.0.0.0/8")
    assert conf["bind"] == "127.0.0.1:9000"
    assert conf["workers"] == 3
    assert conf["threads"] == 8
    assert conf["forwarded_allow_ips"] == "10.0.0.0/8"


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")
@pytest.mark.parametrize("cores, workers", [(1, 3), (2, 5), (3, 7), (4, 8), (64, 8)])
def test_gunicorn_workers_default_is_capped(monkeypatch, cores, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert load_gunicorn_conf(monkeypatch)["workers"] == workers


def test_gunicorn_config_names_are_all_gunicorn_settings():
    # Gunicorn silently ignores a name it doesn't know (e.g. `keep_alive`).
    from gunicorn.config import KNOWN_SETTINGS

    known = {setting.name for setting in KNOWN_SETTINGS}
    conf = runpy.run_path(str(GUNICORN_CONF))
    names = {k for k, v in conf.items() if not k.startswith("_") and not inspect.ismodule(v)}
    assert names <= known, names - known


# --- the image -------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Containerfile, continuation lines joined."""
    lines, current = [], ""
    for raw in CONTAINERFILE.read_text().splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        current += raw.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        lines.append(current)
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_containerfile_shape():
    steps = instructions()
    froms = [args for op, args in steps if op == "FROM"]
    assert froms == ["python:3.11-slim AS builder", "python:3.11-slim"]
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM"):]
    ops = dict(final)  # the last of each in the final stage
    assert ops["USER"] == f"{UID}:{UID}"
    assert ops["EXPOSE"] == "8000"
    assert yaml.safe_load(ops["ENTRYPOINT"]) == ["/app/deploy/entrypoint.sh"]
    assert yaml.safe_load(ops["CMD"]) == ["web"]
    assert ops["WORKDIR"] == "/app"
    env = " ".join(args for op, args in final if op == "ENV")
    assert "PYTHONUNBUFFERED=1" in env and "/opt/venv/bin" in env
    assert any(op == "COPY" and "--from=builder" in args and "/opt/venv" in args for op, args in final)
    assert any(op == "RUN" and "requirements.txt" in args and "/opt/venv" in args for op, args in steps)


def test_the_build_time_collectstatic_works_with_its_throwaway_keys(tmp_path):
    (run,) = [args for op, args in instructions() if op == "RUN" and "collectstatic" in args]
    words = shlex.split(run)
    assignments = dict(w.split("=", 1) for w in words[: words.index("python")])
    assert set(assignments) >= {"DEBUG", "SECRET_KEY", "HOIST_CREDENTIALS_KEY"}
    assert assignments["DEBUG"] == "false"
    # The throwaway keys live only in that RUN line, never in an ENV of the image.
    env_lines = " ".join(args for op, args in instructions() if op in ("ENV", "ARG"))
    assert "SECRET_KEY" not in env_lines and "HOIST_CREDENTIALS_KEY" not in env_lines

    static_root = tmp_path / "staticfiles"
    env = clean_env(**assignments, STATIC_ROOT=str(static_root), DATABASE_URL=f"sqlite:///{tmp_path / 'no.sqlite3'}")
    out = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (static_root / "staticfiles.json").exists()  # whitenoise's manifest, needed with DEBUG off
    assert not (tmp_path / "no.sqlite3").exists(), "collectstatic touched the database"


def test_the_containerignore_keeps_local_state_out():
    patterns = {line.strip() for line in (ROOT / ".containerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert patterns >= {".git", ".venv", "var", "db.sqlite3", "db.sqlite3-*", "test-artifacts", "**/__pycache__"}
    for needed in ("requirements.txt", "manage.py", "deploy", "config", "static", "templates"):
        assert needed not in patterns
