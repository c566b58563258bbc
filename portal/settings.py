"""Slice Portal settings, driven by the environment.

Environment variables (all optional):

- ``DATABASE_URL``: e.g. ``postgres://user@127.0.0.1:5432/db``; default a SQLite file.
- ``REDIS_URL``: default ``redis://127.0.0.1:6379/0``.
- ``SECRET_KEY``: default a random key kept in ``var/secret_key`` (never in the repo).
- ``DEBUG``: ``1``/``true`` to enable; default off.
- ``ALLOWED_HOSTS``: comma separated; default ``localhost,127.0.0.1,[::1]``.
- ``CSRF_TRUSTED_ORIGINS``: comma separated origins for HTTPS deployments.
- ``SECURE``: ``1`` when served over HTTPS (secure cookies, HSTS, redirect).
- ``SLICE_PORTAL_VAR``: folder for local state (secret key, SQLite file, lab).
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SLICE_PORTAL_VAR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable (``1``, ``true``, ``yes``, ``on``)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    """Read a comma-separated environment variable into a list."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _secret_key() -> str:
    """The secret key from the environment, else one generated once into VAR_DIR."""
    if key := os.environ.get("SECRET_KEY"):
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    # First: its runserver serves the ASGI application (HTTP and the consoles' WebSockets).
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served by us, never from a CDN
    "django_rq",
    "channels",
    "axes",
    "audit",
    "inventory",
    "slices",
    "provisioning",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.context.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: answers a request that axes found locked out (too many failed logins) with 429.
    "axes.middleware.AxesMiddleware",
]

# Failed logins (designer, admin, POST /api/auth/token/): after AXES_FAILURE_LIMIT wrong passwords
# for one username from one address, that pair is locked out for LOGIN_LOCKOUT_MINUTES (audit.lockout).
AUTHENTICATION_BACKENDS = [
    "audit.lockout.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
# HTTP and WebSockets (the VM consoles) from one process: daphne, or runserver in development.
ASGI_APPLICATION = "portal.asgi.application"

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
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent writers (the designer saves every node's position at once) take turns instead of
    # failing with "database is locked": a write transaction takes the lock when it begins
    # (IMMEDIATE, no deadlocked upgrade from a read), waits up to 20 s for it, and WAL lets
    # readers go on meanwhile.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
STATIC_ROOT = VAR_DIR / "staticfiles"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "slice-list"
LOGOUT_REDIRECT_URL = "login"

# --- Security (see `manage.py check --deploy`) --------------------------------
SECURE = env_bool("SECURE")
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_SSL_REDIRECT = SECURE
SECURE_HSTS_SECONDS = 31536000 if SECURE else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE
SECURE_HSTS_PRELOAD = SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SECURE else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- REST API -------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "slices.tokens.ApiTokenAuthentication",  # named tokens (and DRF's own)
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Request bodies are JSON only (the slice import declares its own parsers for YAML and file uploads):
    # a form or multipart body is a 415, never read as something else.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # The error answers (one Error body) are added to every operation of the schema.
    "DEFAULT_SCHEMA_CLASS": "slices.api.schema.PortalAutoSchema",
    # ?limit= (default 100, at most 1000) and ?offset=; nonsense is a 400.
    "DEFAULT_PAGINATION_CLASS": "slices.api.pagination.PortalPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "slices.api.exceptions.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Slice Portal API",
    "DESCRIPTION": (
        "Design VM slices (VMs and L2 links) and deploy them onto an Open vSwitch cluster.\n\n"
        "Request bodies are JSON (the slice import also takes YAML or a file upload). "
        "Lists are pages: `?limit=` rows (default 100, at most 1000: a larger limit is lowered to 1000) "
        "from `?offset=` (0 to 2147483647); anything else is a 400. "
        "Every refusal has one body, `Error`: `detail` (one sentence), `code` (for programs) and, only when "
        "inputs were refused, `errors` (every message by field path). Another user's object and a "
        "missing one get the same answer."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Job queue --------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RQ_QUEUES = {
    "provisioning": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 1800},
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600},
}

# --- Consoles (WebSockets) ------------------------------------------------------------
# The consoles' viewers of one VM, in any portal process, share one relay through this channel layer.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # channels-redis blocks 5 s per read (BZPOPMIN); redis-py 8's default socket timeout is
            # also 5 s, which breaks those reads with "Timeout reading": a longer one keeps them whole.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
            "prefix": os.environ.get("CHANNELS_PREFIX", "sp-channels"),
        },
    }
}
# A console nobody typed into for this many seconds closes (its SSH channel and host-side socat with it).
CONSOLE_IDLE_TIMEOUT = int(os.environ.get("CONSOLE_IDLE_TIMEOUT", "1800"))
# Bytes of console.log a viewer gets on connect (the recent scrollback).
CONSOLE_SCROLLBACK_BYTES = int(os.environ.get("CONSOLE_SCROLLBACK_BYTES", "16384"))

# --- Slice design: VLANs, IPAM, quotas ----------------------------------------------
# Global VLAN range handed out to links (inclusive). VLAN 400 is reserved for internet.
SLICE_VLAN_MIN = int(os.environ.get("SLICE_VLAN_MIN", "100"))
SLICE_VLAN_MAX = int(os.environ.get("SLICE_VLAN_MAX", "3999"))
# Link subnets: the /24 number `vlan` inside this supernet (a /12 has 4096 /24s,
# one per possible VLAN id), so two VLANs can never share or overlap a subnet.
SLICE_LINK_SUPERNET = os.environ.get("SLICE_LINK_SUPERNET", "10.64.0.0/12")
# Port security on link VLANs (docs/provisioning.md): guard flows on every link TAP so that no guest
# poses as its link's gateway or DHCP server or sends from another MAC. Off ("0") for guests that must
# bridge other MACs onto a link or serve DHCP themselves. VLAN 400 TAPs are always guarded.
SLICE_LINK_GUARD = os.environ.get("SLICE_LINK_GUARD", "1") not in ("0", "false", "no", "off", "")
# Default quotas per user; an operator overrides them per user in the admin.
SLICE_QUOTA_VMS = int(os.environ.get("SLICE_QUOTA_VMS", "64"))
SLICE_QUOTA_VCPUS = int(os.environ.get("SLICE_QUOTA_VCPUS", "128"))
SLICE_QUOTA_RAM_MIB = int(os.environ.get("SLICE_QUOTA_RAM_MIB", "131072"))
# Slice lifetime (slices.lifetime): a deploy sets the expiry SLICE_LIFETIME_HOURS from then (at most the
# user's maximum, UserQuota.max_lifetime_hours or SLICE_LIFETIME_MAX_HOURS); the owner may extend it up to
# that maximum from now; the designer warns SLICE_EXPIRY_WARNING_HOURS before; a scheduled job
# (provisioning.cron, every SLICE_EXPIRY_INTERVAL seconds) destroys expired slices, keeping the design.
SLICE_LIFETIME_HOURS = int(os.environ.get("SLICE_LIFETIME_HOURS", "168"))
SLICE_LIFETIME_MAX_HOURS = int(os.environ.get("SLICE_LIFETIME_MAX_HOURS", "720"))
SLICE_EXPIRY_WARNING_HOURS = int(os.environ.get("SLICE_EXPIRY_WARNING_HOURS", "24"))
SLICE_EXPIRY_INTERVAL = int(os.environ.get("SLICE_EXPIRY_INTERVAL", "60"))
# containerlab imports: node image or kind -> this installation's image name, written
# "kind=image,kind2=image2,*=image3" ("*": any other kind; an empty image: the default
# image). Empty (the default): every kind gets the default image. See docs/slices-as-code.md.
SLICE_CLAB_IMAGE_MAP = {
    key.strip(): value.strip() or None
    for key, _, value in (
        item.partition("=") for item in os.environ.get("SLICE_CLAB_IMAGE_MAP", "").split(",") if item.strip()
    )
}

# --- Provisioning ----------------------------------------------------------------------
# Local lab state (see `manage.py lab up`). A short absolute path: the lab's unix
# sockets live below it and Linux caps their paths at 108 bytes.
# QEMU accelerator of the lab's workers: tcg (default; KVM inside a VM without nested virtualisation
# passes the firmware probe yet cannot boot a kernel), kvm, or auto (probe, as for production hosts).
LAB_ACCEL = os.environ.get("LAB_ACCEL", "tcg")
LAB_DIR = Path(os.environ.get("LAB_DIR", "/var/lib/slice-portal-lab"))
# Known-hosts files every SSH host key is checked against, several joined by ":" (like PATH); a
# missing one is skipped. Default: the local lab's LAB_DIR/ssh/known_hosts (written by `lab up`,
# machine-wide like the lab, so every checkout on the machine trusts the lab that is up), then
# the file the operator manages, var/ssh/known_hosts.
PROVISIONING_KNOWN_HOSTS = os.environ.get(
    "PROVISIONING_KNOWN_HOSTS",
    os.pathsep.join([str(LAB_DIR / "ssh" / "known_hosts"), str(VAR_DIR / "ssh" / "known_hosts")]),
)
PROVISIONING_CONNECT_TIMEOUT = int(os.environ.get("PROVISIONING_CONNECT_TIMEOUT", "10"))
PROVISIONING_COMMAND_TIMEOUT = int(os.environ.get("PROVISIONING_COMMAND_TIMEOUT", "300"))
# A worker keeps each host's SSH connection this long (s) after a job for the next one to the same
# host (provisioning.sshpool); 0: every job connects afresh, and workers fork a process per job.
PROVISIONING_SSH_KEEP = int(os.environ.get("PROVISIONING_SSH_KEEP", "300"))
# `manage.py rqworker`'s class: jobs in the worker's own process while connections are kept (provisioning.worker).
RQ = {"WORKER_CLASS": "provisioning.worker.Worker" if PROVISIONING_SSH_KEEP > 0 else "rq.Worker"}
PROVISIONING_JOB_TIMEOUT = int(os.environ.get("PROVISIONING_JOB_TIMEOUT", "1800"))
# "fabric" runs plans over SSH; "dry-run" records the commands without running them.
PROVISIONING_RUNNER = os.environ.get("PROVISIONING_RUNNER", "fabric")
# How long the deploy's last phase waits for every VLAN interface's DHCP lease.
PROVISIONING_LEASE_WAIT = int(os.environ.get("PROVISIONING_LEASE_WAIT", "60"))
# How long a shut down waits for the guest to power off (ACPI) before it forces the VM off.
PROVISIONING_SHUTDOWN_TIMEOUT = int(os.environ.get("PROVISIONING_SHUTDOWN_TIMEOUT", "60"))
# A running job that has not stamped its heartbeat for this long is abandoned.
PROVISIONING_HEARTBEAT_TIMEOUT = int(os.environ.get("PROVISIONING_HEARTBEAT_TIMEOUT", "60"))
# Seconds between runs of the scheduled reaper (manage.py rqcron provisioning.cron).
PROVISIONING_REAP_INTERVAL = int(os.environ.get("PROVISIONING_REAP_INTERVAL", "60"))
# Drift check (provisioning.drift): every host observed this often (s), each check job bounded to this (s).
PROVISIONING_CHECK_INTERVAL = int(os.environ.get("PROVISIONING_CHECK_INTERVAL", "60"))
PROVISIONING_CHECK_TIMEOUT = int(os.environ.get("PROVISIONING_CHECK_TIMEOUT", "60"))
# History retention (provisioning.retention): deployments older than PROVISIONING_HISTORY_DAYS and
# beyond the last PROVISIONING_HISTORY_KEEP of their slice are pruned every PROVISIONING_PRUNE_INTERVAL
# seconds (never a slice's latest, nor a job its footprint on the hosts still depends on).
PROVISIONING_HISTORY_DAYS = int(os.environ.get("PROVISIONING_HISTORY_DAYS", "30"))
PROVISIONING_HISTORY_KEEP = int(os.environ.get("PROVISIONING_HISTORY_KEEP", "10"))
PROVISIONING_PRUNE_INTERVAL = int(os.environ.get("PROVISIONING_PRUNE_INTERVAL", "3600"))
# Usage (provisioning.usage): each drift check samples host load and per-VM CPU/memory, at most one
# sample per host every USAGE_MIN_INTERVAL seconds, kept USAGE_WINDOW_HOURS.
USAGE_MIN_INTERVAL = int(os.environ.get("USAGE_MIN_INTERVAL", "30"))
USAGE_WINDOW_HOURS = int(os.environ.get("USAGE_WINDOW_HOURS", "24"))
# TTL of the per-network-node lock, renewed while the job lives.
PROVISIONING_LOCK_TTL = int(os.environ.get("PROVISIONING_LOCK_TTL", "30"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},  # 500s, DEBUG off too
        "slices": {"handlers": ["console"], "level": "INFO"},
        "provisioning": {"handlers": ["console"], "level": "INFO"},
        "paramiko": {"handlers": ["console"], "level": "WARNING"},
    },
}
