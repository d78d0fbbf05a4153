"""Gunicorn settings for Hoist's web role (`deploy/entrypoint.sh web`).

Gunicorn reads this file as Python: every module-level name is a setting.
The values a deployment may want to change come from HOIST_* variables.
"""

import os


def _cores() -> int:
    # The CPUs this process may run on. In a container this is usually the
    # node's count, not the pod's CPU limit: set HOIST_WEB_WORKERS there.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


bind = os.environ.get("HOIST_BIND", "0.0.0.0:8000")

# The usual 2 × cores + 1, capped: each worker is a whole Django process, and
# past a few of them memory runs out before CPU does.
workers = int(os.environ.get("HOIST_WEB_WORKERS", "0")) or min(2 * _cores() + 1, 8)

# Threads: a request mostly waits on the database or a cluster's API, so a few
# threads per worker serve more requests for the same memory.
worker_class = "gthread"
threads = int(os.environ.get("HOIST_WEB_THREADS", "4"))

# Kill a worker stuck on one request for a minute; slow work belongs to the
# django-q2 workers, not to a request.
timeout = 60
# On SIGTERM (a rollout, a scale-down), let requests in flight finish first.
# The pod's terminationGracePeriodSeconds must be longer than this.
graceful_timeout = 30
# Longer than the default 2 s, so a proxy in front (an Ingress controller)
# can reuse connections; with gthread an idle connection waits in the poller,
# not on a thread.
keepalive = 5

# Logs to stdout/stderr, where the container runtime collects them.
accesslog = "-"
errorlog = "-"

# Peers trusted to set X-Forwarded-Proto and the like for gunicorn itself.
# Django decides https from X-Forwarded-Proto on its own (HOIST_BEHIND_TLS_PROXY),
# so the default only trusts a proxy on the same host.
forwarded_allow_ips = os.environ.get("HOIST_FORWARDED_ALLOW_IPS", "127.0.0.1")

# Restart each worker after about 1000 requests, at staggered times, so a slow
# leak can't grow forever and the workers don't all restart at once.
max_requests = 1000
max_requests_jitter = 100

# Workers tell the arbiter they are alive by touching a file. /dev/shm is in
# memory: no disk stalls, and it stays writable when the root filesystem is
# read-only (as in deploy/kubernetes).
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

# The control socket (for `gunicornc`) would go under $HOME, which is read-only
# in the container; the orchestrator restarts and scales the pods instead.
control_socket_disable = True


def child_exit(server, worker):
    # prometheus_client's multiprocess mode: forget the live gauges of a worker
    # that exited (its counters stay, as they should).
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
