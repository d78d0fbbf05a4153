#!/bin/sh
# Hoist's entry point: one image, several roles. The first argument picks the role:
#   web        the web server: gunicorn with deploy/gunicorn.conf.py
#   worker     django-q2 workers (manage.py qcluster)
#   observer   the cluster observer (manage.py observe)
#   migrate    apply the database migrations, then exit
#   manage     any manage.py command, e.g. `manage createsuperuser`
# Arguments after the role go to the command. It runs from the directory above
# its own with the `python` and `gunicorn` found on PATH, so it works the same
# in the image (/app/deploy/entrypoint.sh) and from a checkout with a venv.
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
cd -- "$here/.."

usage() {
    echo "usage: $0 web|worker|observer|migrate|manage [arguments]" >&2
    exit 2
}

# prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR) needs the
# directory to exist. It is not emptied here: several processes may share it
# (the web and the workers on one machine), and in Kubernetes it sits on the
# pod's own /tmp, which starts empty with each pod.
metrics_dir() {
    if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
        mkdir -p -- "$PROMETHEUS_MULTIPROC_DIR"
    fi
}

[ $# -gt 0 ] || usage
role=$1
shift

case "$role" in
    web)
        metrics_dir
        exec gunicorn -c "$here/gunicorn.conf.py" "$@" config.wsgi:application
        ;;
    worker)
        metrics_dir
        exec python manage.py qcluster "$@"
        ;;
    observer)
        exec python manage.py observe "$@"
        ;;
    migrate)
        exec python manage.py migrate --noinput "$@"
        ;;
    manage)
        exec python manage.py "$@"
        ;;
    *)
        echo "unknown role: $role" >&2
        usage
        ;;
esac
