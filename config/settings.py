"""Hoist settings: one module, driven by the environment.

Everything a deployment changes comes from environment variables; the defaults
are for a developer's laptop (SQLite, DEBUG on, a throwaway secret). With
DEBUG off the process refuses to start without a real SECRET_KEY and
HOIST_CREDENTIALS_KEY, so a production install can't silently run on the
development defaults.
"""

import base64
import hashlib
import math
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def env_number(name: str, default: float, *, integer: bool = False, minimum: float = 0) -> float:
    """A number from the environment; a value that isn't one (or is below `minimum`) stops
    startup with a message naming the variable, not a traceback from float()."""
    raw = os.environ.get(name) or str(default)
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < minimum:
        kind = "a whole number" if integer else "a number"
        raise ImproperlyConfigured(f"{name} must be {kind} of at least {minimum:g} (got {raw!r})")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", default=False)

_DEV_SECRET = "hoist-development-only-secret-key-do-not-use-in-production-0123456789"
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = _DEV_SECRET

# Fernet keys that encrypt cluster credentials and secret env values at rest.
# Comma-separated: the first encrypts, all decrypt (rotate by prepending a new key).
HOIST_CREDENTIALS_KEYS = env_list("HOIST_CREDENTIALS_KEY")
if not HOIST_CREDENTIALS_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "HOIST_CREDENTIALS_KEY must be set when DEBUG is off "
            "(generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
        )
    # Development: derive a stable key from SECRET_KEY so a laptop database stays readable.
    HOIST_CREDENTIALS_KEYS = [
        base64.urlsafe_b64encode(hashlib.sha256(("hoist-credentials:" + SECRET_KEY).encode()).digest()).decode()
    ]

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "rest_framework",
    "django_q",
    "projects",
    "environments",
    "promotions",
    "web",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "axes",  # login throttling (see "Login throttling" below)
    "csp",  # Content-Security-Policy (see "Content-Security-Policy" below)
]

MIDDLEWARE = [
    "core.health.ProbeMiddleware",  # probes come by pod IP over HTTP: before host checks and redirects
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.doors.DoorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out sign-in into the lockout answer
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            "builtins": ["web.templatetags.hoist"],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

# SQLite unless DATABASE_URL says otherwise (CI and production use PostgreSQL).
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        # Persistent connections: a django-q2 worker runs many short tasks, and
        # opening a PostgreSQL connection for each would cost more than the task.
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DATABASE_PREPARED_STATEMENTS", True):
    # Parameters bound by the server, and a statement run a few times on a connection
    # prepared: PostgreSQL then skips parsing and planning the statements a reconcile repeats,
    # about half its CPU per reconcile in the fan-out benchmark. Off behind a pooler in
    # transaction mode that can't keep prepared statements (PgBouncer before 1.21).
    DATABASES["default"].setdefault("OPTIONS", {}).update({"server_side_binding": True, "prepare_threshold": 5})
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the django-q2 worker share the file: wait for locks
    # instead of failing with "database is locked", and take the write lock at
    # BEGIN so select_for_update-style sections don't deadlock on upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "project_list"
LOGOUT_REDIRECT_URL = "login"

# Production hardening; `manage.py check --deploy` is clean with DEBUG off.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("HOIST_BEHIND_TLS_PROXY") else None
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^metrics$"]  # Prometheus scrapes in-cluster over HTTP
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=False)
# Submitting a domain to the browsers' HSTS preload list is the domain owner's
# decision (it affects every subdomain and is slow to undo), so not warning.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Login throttling (django-axes) ----------------------------------------------------------
# Failed sign-ins are counted per (username, client address) pair, at every door that checks a
# password: /login/, the admin's login and HTTP Basic at POST /api/v1/tokens/. After
# HOIST_LOGIN_FAILURE_LIMIT failures the pair is locked out for HOIST_LOGIN_COOLOFF_MINUTES,
# counted from the failure that locked it: every sign-in of that pair is refused with a 429
# (core/lockout.py), the right password included. Other addresses, and other users at the same
# address, are not affected. The address is core.http.client_ip's: behind the TLS proxy
# (HOIST_BEHIND_TLS_PROXY) the X-Forwarded-For entry the proxy appended, which the client can't
# choose. An operator unlocks early with `manage.py axes_reset_username NAME` (docs/deploying.md).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out pair before any password check
    "django.contrib.auth.backends.ModelBackend",
]
try:
    AXES_FAILURE_LIMIT = int(os.environ.get("HOIST_LOGIN_FAILURE_LIMIT") or "5")
    _LOGIN_COOLOFF_MINUTES = float(os.environ.get("HOIST_LOGIN_COOLOFF_MINUTES") or "15")
except ValueError:
    AXES_FAILURE_LIMIT = _LOGIN_COOLOFF_MINUTES = 0
if AXES_FAILURE_LIMIT < 1 or not 0 < _LOGIN_COOLOFF_MINUTES <= 525600:
    raise ImproperlyConfigured(
        "HOIST_LOGIN_FAILURE_LIMIT must be a whole number of at least 1, "
        "HOIST_LOGIN_COOLOFF_MINUTES a number of minutes above 0 (at most a year)"
    )
AXES_COOLOFF_TIME = _LOGIN_COOLOFF_MINUTES / 60  # axes reads a float as hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "core.http.client_ip"
AXES_USERNAME_CALLABLE = "core.lockout.username"
AXES_LOCKOUT_CALLABLE = "core.lockout.locked_out"
AXES_HTTP_RESPONSE_CODE = 429
# A successful sign-in forgets the pair's earlier failures; failures while locked out are not
# counted (they neither extend the lock nor grow the attempt's stored request data).
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_VERBOSE = False  # no banner on every manage.py command; lockouts are still logged (warnings)

# --- Content-Security-Policy (django-csp) ----------------------------------------------------
# Every page loads scripts, styles, images and data from this server only, with no inline
# script, inline style or eval (htmx runs with allowEval off, its indicator CSS is in
# hoist.css, the pin picker is static/js/hoist.js). ReDoc's page alone loosens it, for itself
# only: inline styles and a blob: worker (config/api_urls.py says why).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    },
}

REST_FRAMEWORK = {
    # Tokens first: an unauthenticated request gets a 401 with `WWW-Authenticate: Bearer`.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "projects.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.Pagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "core.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.errors.exception_handler",
    "PAGE_SIZE": 50,
}
# Largest API request body; a bigger one is refused with 413 before it is parsed.
HOIST_API_MAX_BODY_BYTES = int(os.environ.get("HOIST_API_MAX_BODY_BYTES", str(256 * 1024)))

SPECTACULAR_SETTINGS = {
    "TITLE": "Hoist API",
    "DESCRIPTION": (
        "Promote container images between the environments of a project. "
        "Authenticate with `Authorization: Bearer <token>` (create tokens at /tokens/ or POST /api/v1/tokens/). "
        "Every error has the body `{\"detail\": str, \"code\": str, \"errors\": {field: [str]}}`; "
        "`errors` names the fields of the request at fault (dotted for nested ones, e.g. `source.digest`)."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"SecretStateEnum": ["set", "not set"],
                            "FreezeWindowKindEnum": "environments.models.FreezeWindow.Kind",
                            "ChangeRequestKindEnum": "environments.models.ChangeRequest.Kind",
                            "ResourceKindEnum": "environments.models.Kind",
                            "ChangeRequestStatusEnum": "environments.models.ChangeRequest.Status"},
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums"],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # The docs UIs load their JavaScript/CSS from drf-spectacular-sidecar's static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# django-q2: the ORM broker by default (nothing extra to run); set REDIS_URL to
# use Redis when workers run on several machines.
Q_CLUSTER = {
    "name": "hoist",
    "workers": int(os.environ.get("HOIST_Q_WORKERS", "4")),  # reconciles wait on I/O, not CPU
    # A batch of reconciles against a slow cluster may take minutes; the broker
    # redelivers a task only after `retry`, which must exceed `timeout`.
    "timeout": 300,
    "retry": 360,
    "max_attempts": 1,  # Hoist retries reconciles itself, with backoff and a record.
    "catch_up": False,
    # The ORM broker polls; fetch several tasks per poll so a fan-out of
    # track-latest dependants isn't limited to one task per poll interval.
    "poll": 0.05,
    "bulk": 10,
    "label": "Tasks",
}
if os.environ.get("REDIS_URL"):
    Q_CLUSTER["redis"] = os.environ["REDIS_URL"]
else:
    Q_CLUSTER["orm"] = "default"

# Where cross-cluster promotions mirror images: `<central>/<layout>@<digest>`.
HOIST_CENTRAL_REGISTRY = os.environ.get("HOIST_CENTRAL_REGISTRY", "")
HOIST_MIRROR_LAYOUT = os.environ.get("HOIST_MIRROR_LAYOUT", "{project}/{resource}")
HOIST_CENTRAL_REGISTRY_USERNAME = os.environ.get("HOIST_CENTRAL_REGISTRY_USERNAME", "")
HOIST_CENTRAL_REGISTRY_PASSWORD = os.environ.get("HOIST_CENTRAL_REGISTRY_PASSWORD", "")
# Keep tags (promotions/keeping.py): besides what each resource runs and is pinned to, its last
# this many digests that ran healthy are kept from registry clean-up (what it may roll back to).
HOIST_KEEP_HEALTHY = env_number("HOIST_KEEP_HEALTHY", 5, integer=True, minimum=0)
# Registries spoken to over plain HTTP besides loopback ones (which always are).
HOIST_INSECURE_REGISTRIES = env_list("HOIST_INSECURE_REGISTRIES")
# Outbound policy (environments/outbound.py): the registry hosts Hoist may connect to for
# developers' image references, as host patterns: "registry.example.com", "*.corp.example",
# "10.20.0.0/16", any of them with ":port". Unset: any host whose addresses are all public.
HOIST_ALLOWED_REGISTRIES = env_list("HOIST_ALLOWED_REGISTRIES")
# With no list, also allow loopback/private/link-local registries (a laptop's). Never in production.
HOIST_ALLOW_PRIVATE_REGISTRIES = env_bool("HOIST_ALLOW_PRIVATE_REGISTRIES", default=DEBUG)
# Calls to registries: per-step timeouts, a deadline per call (a mirror's is long: it copies
# layers), how many calls one developer-named registry host may have in flight installation-wide
# (keep it below the worker count: a host that never answers can then hold that many workers,
# never all), and how long a web request may wait on a registry before the work is queued.
HOIST_REGISTRY_CONNECT_TIMEOUT_S = env_number("HOIST_REGISTRY_CONNECT_TIMEOUT_S", 3, minimum=0.1)
HOIST_REGISTRY_READ_TIMEOUT_S = env_number("HOIST_REGISTRY_READ_TIMEOUT_S", 10, minimum=0.1)
HOIST_REGISTRY_DEADLINE_S = env_number("HOIST_REGISTRY_DEADLINE_S", 20, minimum=0.1)
HOIST_MIRROR_DEADLINE_S = env_number("HOIST_MIRROR_DEADLINE_S", 600, minimum=1)
HOIST_REGISTRY_CONCURRENCY = env_number("HOIST_REGISTRY_CONCURRENCY", 2, integer=True, minimum=1)
HOIST_REQUEST_REGISTRY_WAIT_S = env_number("HOIST_REQUEST_REGISTRY_WAIT_S", 3, minimum=0.1)
# The rate limit per registry host, every use together (tag watches, resolves, mirrors), unless a
# registry's own row in the admin says otherwise; and how long a call may wait for its turn before
# it is put off (a worker is not held by a registry that is busy).
HOIST_REGISTRY_RATE_PER_S = env_number("HOIST_REGISTRY_RATE_PER_S", 20, minimum=0.1)
HOIST_REGISTRY_MAX_WAIT_S = env_number("HOIST_REGISTRY_MAX_WAIT_S", 2, minimum=0)
# Tag watching: seconds between two checks (one HEAD) of each tag an image-source resource names,
# unless a registry's own row says otherwise; threads per registry host in the watcher.
HOIST_TAG_WATCH_INTERVAL_S = env_number("HOIST_TAG_WATCH_INTERVAL_S", 30, minimum=5)
HOIST_TAG_WATCH_THREADS = env_number("HOIST_TAG_WATCH_THREADS", 2, integer=True, minimum=1)
# Circuit breakers, per registry host and per cluster: open after this many transient failures
# in a row, for a cooldown that doubles after each failed probe, up to the maximum.
HOIST_BREAKER_FAILURES = env_number("HOIST_BREAKER_FAILURES", 3, integer=True, minimum=1)
HOIST_BREAKER_COOLDOWN_S = env_number("HOIST_BREAKER_COOLDOWN_S", 5, minimum=0.1)
HOIST_BREAKER_MAX_COOLDOWN_S = env_number("HOIST_BREAKER_MAX_COOLDOWN_S", 60, minimum=0.1)
# Shared secret registries send (Authorization: Bearer …) to /hooks/registry/; unset closes the receiver.
HOIST_WEBHOOK_TOKEN = os.environ.get("HOIST_WEBHOOK_TOKEN", "")
# Bearer token Prometheus sends to /metrics; unset: /metrics answers only with DEBUG on.
HOIST_METRICS_TOKEN = os.environ.get("HOIST_METRICS_TOKEN", "")
# Where people reach Hoist's pages (https://hoist.example.com): notifications link to them.
# Unset: the links are paths only (in development, the local server).
HOIST_PUBLIC_URL = os.environ.get("HOIST_PUBLIC_URL", "http://127.0.0.1:8000" if DEBUG else "").rstrip("/")
# Threads a worker reconciles one chunk of a fan-out on (reconciles mostly wait on I/O).
HOIST_RECONCILE_THREADS = env_number("HOIST_RECONCILE_THREADS", 2, integer=True, minimum=1)
# Reconcile: attempts within one task before leaving a transient failure to the sweep.
HOIST_RECONCILE_ATTEMPTS = int(os.environ.get("HOIST_RECONCILE_ATTEMPTS", "4"))
HOIST_RECONCILE_BACKOFF_S = float(os.environ.get("HOIST_RECONCILE_BACKOFF_S", "0.5"))
# A reconcile claims its resource for this long (renewed around slow steps); a worker killed
# mid-task loses its claim then, and the observer hands the work to another worker.
HOIST_RECONCILE_LEASE_S = float(os.environ.get("HOIST_RECONCILE_LEASE_S", "5"))
# The observer: how often it looks for work nobody holds (lost tasks, soaks ending, retries),
# and how long desired state may stay unreconciled and unclaimed before it hands it out again.
HOIST_OBSERVER_TICK_S = float(os.environ.get("HOIST_OBSERVER_TICK_S", "0.5"))
HOIST_OBSERVER_NUDGE_AFTER_S = float(os.environ.get("HOIST_OBSERVER_NUDGE_AFTER_S", "2"))
# While tasks wait in the broker, a dirty resource is taken for lost only after this long.
HOIST_OBSERVER_LOST_AFTER_S = float(os.environ.get("HOIST_OBSERVER_LOST_AFTER_S", "60"))


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"()": "core.logs.PlainFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "core.logs.JSONFormatter"},
    },
    # HOIST_LOG_FORMAT=json: one JSON object per line (resource, promotion, digest as fields).
    "handlers": {"console": {"class": "logging.StreamHandler",
                             "formatter": "json" if os.environ.get("HOIST_LOG_FORMAT", "").lower() == "json" else "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
