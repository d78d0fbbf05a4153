"""`python -m sandbox` as another process would start it."""
import os
import signal
import subprocess
import sys
from pathlib import Path

from kubernetes import client

ROOT = Path(__file__).resolve().parents[2]


def test_python_m_sandbox_prints_url_and_serves():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "sandbox", "--port", "0", "--token", "t0ken"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and int(url.rsplit(":", 1)[1]) > 0
        config = client.Configuration(host=url, api_key={"authorization": "Bearer t0ken"})
        core = client.CoreV1Api(client.ApiClient(config))
        core.create_namespace({"metadata": {"name": "from-cli"}})
        assert core.read_namespace("from-cli").status.phase == "Active"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
