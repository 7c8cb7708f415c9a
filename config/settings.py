"""One settings module; everything deployment-specific comes from the environment
(see config/env.py). Unset variables give the embedded default: SQLite, no Redis."""

import os
import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.env import (
    cors_origins,
    database_from_url,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_origins,
    env_rate,
    env_str,
    redis_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

# --- Core -----------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)
_DEV_SECRET = "dev-only-insecure-secret-key-change-me-0123456789abcdef"
# Off DEBUG the key must come from the environment: a default would be a shared secret.
if not DEBUG and "SECRET_KEY" not in os.environ:
    raise ImproperlyConfigured("SECRET_KEY must be set (or DEBUG=true for a development-only key)")
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET)
if len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters long")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_origins("CSRF_TRUSTED_ORIGINS", ["http://localhost:8000", "http://127.0.0.1:8000"])

# No "daphne": uvicorn serves HTTP and websockets (README), and daphne's Twisted cost
# 23 MiB in every process. `manage.py runserver` then serves HTTP only.
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Before staticfiles: runserver, too, serves static files the way production does.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "channels",
    "corsheaders",
    "django_tasks",
    "django_tasks_db",
    "tenants",
    "contracts",
    "reviews",
]

MIDDLEWARE = [
    # Outermost: answers preflights before anything else runs, and puts its headers on
    # every answer, the JSON errors of the middleware below included (a browser client
    # cannot read an error without them).
    "corsheaders.middleware.CorsMiddleware",
    # Under /api/ and the LangGraph prefixes: every error a JSON body, in DEBUG too, a lost database a 503
    # (config.api_middleware). Outermost but one, so it also sees errors of the middleware below.
    "config.api_middleware.ApiJsonErrorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Right after SecurityMiddleware, as WhiteNoise asks: static files are answered
    # before sessions, CSRF or auth run (uvicorn serves nothing else).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # CommonMiddleware, with a method-keeping 308 for a missing slash under /api/.
    "config.api_middleware.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database -------------------------------------------------------------------------

DATABASES = {
    "default": database_from_url(
        "DATABASE_URL",
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'hitl.sqlite3'}"),
        base_dir=BASE_DIR,
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The hot point queries and writes as named prepared statements of each PostgreSQL
# session (config.postgresql.prepared). Off behind a pooler that hands one session's
# statements to another client (PgBouncer in transaction mode).
DATABASE_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)

# Where SqliteSaver keeps checkpoints on the embedded default (PostgreSQL keeps them in
# the main database). A separate file keeps the checkpointer's writes from queueing
# behind Django's on SQLite's single write lock.
CHECKPOINT_SQLITE_PATH = env_str("CHECKPOINT_SQLITE_PATH", str(VAR_DIR / "checkpoints.sqlite3"))

# --- Auth -----------------------------------------------------------------------------

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# guardian: no anonymous user row; anonymous requests are refused before permissions.
ANONYMOUS_USER_NAME = None
GUARDIAN_MONKEY_PATCH_USER = False

# --- API ------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Deny by default: a view that forgets its permissions is closed, not open.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "config.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["config.throttling.TokenRateThrottle"],
    # JSON bodies are checked for what PostgreSQL cannot store and for depth (config.parsers).
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.StorableJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
# Per API token (or per signed-in user): "<count>/<second|minute|hour|day>".
API_THROTTLE_RATE = env_rate("API_THROTTLE_RATE", "1200/minute")

SPECTACULAR_SETTINGS = {
    "TITLE": "HITL review API",
    "DESCRIPTION": (
        "Human-in-the-loop review of LangGraph runs: contracts, review queue, decisions, under "
        "/api/v1/tenants/{tenant_slug}/. The same tenant also speaks LangGraph Platform's API, for langgraph-sdk "
        "under /langgraph/{tenant_slug}/ (get_client(url=\".../langgraph/<slug>\")) and for Agent Inbox under "
        "/agent-inbox/{tenant_slug}/ (each review task a thread with a HumanInterrupt); tokens as x-api-key or "
        "Authorization: Bearer, errors as {\"detail\", \"code\"}."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Assets ship with the package: the docs page works on a machine without internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Operations grouped by what they are about (contracts, reviews, ...), not all under
    # "api"; the REST API's groups first, then the two LangGraph prefixes.
    "SCHEMA_PATH_PREFIX": r"/api/v1(/tenants/\{tenant_slug\})?",
    "TAGS": [
        {"name": "contracts", "description": "Submit contracts and follow their runs (agents)."},
        {"name": "reviews", "description": "The review queue: claim, decide, comment, reassign."},
        {"name": "members", "description": "A tenant's people and their roles (tenant admins)."},
        {"name": "policies", "description": "Review policies per kind: due times, reminders, escalation, expiry."},
        {"name": "webhooks", "description": "Signed webhook endpoints and their delivery log."},
        {"name": "events", "description": "The tenant's numbered event log (the live queue's catch-up)."},
        {"name": "audit", "description": "Who did what, through which interface."},
        {"name": "retention", "description": "Checkpoint retention of finished threads."},
        {"name": "ws-ticket", "description": "One-time tickets for the live queue's websocket."},
        {"name": "langgraph", "description": "LangGraph Platform's API, for langgraph-sdk and @langchain/langgraph-sdk."},
        {"name": "agent-inbox", "description": "The same, one thread per review task, for Agent Inbox."},
    ],
    # One name for each choice set that several fields share; the LangGraph prefixes'
    # statuses named as LangGraph names them.
    "ENUM_NAME_OVERRIDES": {
        "EscalationTeamEnum": "reviews.models.ESCALATION_TEAM_CHOICES",
        "ThreadStatusEnum": "contracts.selectors.THREAD_STATUSES",
        "RunStatusEnum": "contracts.platform.serializers.RUN_STATUSES",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.api_docs.document_unsupported_media_type",
    ],
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 1_048_576, minimum=1024)
CONTRACT_TEXT_MAX_CHARS = env_int("CONTRACT_TEXT_MAX_CHARS", 200_000, minimum=100)

# --- LangGraph-compatible API (contracts.platform) ---------------------------------------

# Seconds between the newline keep-alives of runs.wait / join and the heartbeats of
# runs.stream while a worker carries out the run (the SDKs give up after 300 s of silence;
# Agent Inbox's client reconnects after three missed heartbeats).
LANGGRAPH_KEEPALIVE_SECONDS = env_int("LANGGRAPH_KEEPALIVE_SECONDS", 5, minimum=1)

# CORS, for browser clients such as Agent Inbox, on the LangGraph prefixes only (the REST
# API is for servers and the admin). CORS_ALLOWED_ORIGINS: comma-separated origins
# (https://inbox.example.com), or "*" for any (safe here: tokens travel in headers, never
# cookies, so no credentials are allowed). Unset: no cross-origin access.
_CORS_ORIGINS = cors_origins("CORS_ALLOWED_ORIGINS")
CORS_ALLOW_ALL_ORIGINS = _CORS_ORIGINS == ["*"]
CORS_ALLOWED_ORIGINS = [] if CORS_ALLOW_ALL_ORIGINS else _CORS_ORIGINS
CORS_URLS_REGEX = r"^/(langgraph|agent-inbox)/"
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_HEADERS = ["accept", "authorization", "content-type", "user-agent", "x-api-key", "last-event-id",
                      "idempotency-key", "if-match", "cache-control", "prefer"]
CORS_EXPOSE_HEADERS = ["Location", "Content-Location", "X-Pagination-Total", "X-Pagination-Next"]
# Chrome's private-network preflight: a public page (a hosted Agent Inbox) calling a
# server on localhost or the LAN asks first, and is refused unless this is answered.
CORS_ALLOW_PRIVATE_NETWORK = True

# --- Cache -------------------------------------------------------------------------

REDIS_URL = redis_url("REDIS_URL")
# Throttle counters must be shared by every server process: Redis when configured.
# (The live queue needs no channel layer: each server process reads the event log,
# see reviews.relay.)
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "config.redis_cache.SharedClientRedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Live queue stream ------------------------------------------------------------------

# Seconds between a socket's heartbeats (each re-checks its group and reports the
# position, so a client notices lost events even when nothing follows them).
QUEUE_STREAM_HEARTBEAT_SECONDS = env_int("QUEUE_STREAM_HEARTBEAT_SECONDS", 25, minimum=1)
# How often each server process reads the event log for what other processes committed
# when nothing woke it (reviews.relay): the live path on SQLite, which has no
# notifications; on PostgreSQL LISTEN/NOTIFY wakes it and this is only a safety net,
# ten times as long.
QUEUE_STREAM_POLL_MS = env_int("QUEUE_STREAM_POLL_MS", 100, minimum=10)
# Days of queue events kept for catch-up (manage.py prune_queue_events).
QUEUE_EVENT_RETENTION_DAYS = env_int("QUEUE_EVENT_RETENTION_DAYS", 7, minimum=1)

# --- Tasks ----------------------------------------------------------------------------

TASKS_BACKEND = env_str("TASKS_BACKEND", "database")
_TASK_BACKENDS = {
    "database": "contracts.queue_backend.QueueBackend",
    "immediate": "django_tasks.backends.immediate.ImmediateBackend",
}
if TASKS_BACKEND not in _TASK_BACKENDS:
    raise ImproperlyConfigured(f"TASKS_BACKEND must be one of {sorted(_TASK_BACKENDS)}, got {TASKS_BACKEND!r}")
TASKS = {"default": {"BACKEND": _TASK_BACKENDS[TASKS_BACKEND]}}

# How long a worker may hold a contract's run lease before recovery may take it over:
# longer than any one pass of the graph, short enough that a contract whose worker died
# mid-run moves again soon. Renewed at every pass.
RUN_LEASE_SECONDS = env_int("RUN_LEASE_SECONDS", 60, minimum=5)
# A pass that raises is retried after RUN_RETRY_BASE_SECONDS, doubling up to
# RUN_RETRY_MAX_SECONDS; after RUN_RETRY_ATTEMPTS failures in a row the contract is
# `failed`. Database outages are retried without counting.
RUN_RETRY_ATTEMPTS = env_int("RUN_RETRY_ATTEMPTS", 5, minimum=1)
RUN_RETRY_BASE_SECONDS = env_int("RUN_RETRY_BASE_SECONDS", 2, minimum=1)
RUN_RETRY_MAX_SECONDS = env_int("RUN_RETRY_MAX_SECONDS", 300, minimum=1)
# After SIGTERM a worker finishes the task in hand for at most this long, then exits.
WORKER_SHUTDOWN_GRACE_SECONDS = env_int("WORKER_SHUTDOWN_GRACE_SECONDS", 30, minimum=1)

# --- Scheduler (inside every `manage.py run_worker`; one leads at a time) ---------------

SCHEDULER_ENABLED = env_bool("SCHEDULER_ENABLED", True)
# Seconds between runs of each periodic job.
SCHEDULER_RECOVERY_SECONDS = env_int("SCHEDULER_RECOVERY_SECONDS", 5, minimum=1)
SCHEDULER_CLAIMS_SECONDS = env_int("SCHEDULER_CLAIMS_SECONDS", 15, minimum=1)
SCHEDULER_PRUNE_SECONDS = env_int("SCHEDULER_PRUNE_SECONDS", 3600, minimum=1)
# Reminders, escalations and expiries of review tasks (reviews.timers): how late a timer
# may fire at most.
SCHEDULER_REVIEW_TIMERS_SECONDS = env_int("SCHEDULER_REVIEW_TIMERS_SECONDS", 15, minimum=1)
# Webhook fan-out and sending (reviews.webhooks): how soon an event leaves, at most.
SCHEDULER_WEBHOOKS_SECONDS = env_int("SCHEDULER_WEBHOOKS_SECONDS", 2, minimum=1)
# Checkpoint retention and old webhook deliveries (contracts.retention).
SCHEDULER_RETENTION_SECONDS = env_int("SCHEDULER_RETENTION_SECONDS", 3600, minimum=1)

# --- Webhooks -------------------------------------------------------------------------

# Each phase of a request (connect, send, every read of the answer) may take this long.
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
# A failed delivery is tried again after WEBHOOK_RETRY_BASE_SECONDS, doubling up to
# WEBHOOK_RETRY_MAX_SECONDS, WEBHOOK_MAX_ATTEMPTS times in all, then it is `failed`. The
# defaults: 15 attempts over about a day (30 s, 1 min, 2 min, ... 4 h, 4 h, ...), long
# enough to outlast a receiver's night-long outage.
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 15, minimum=1)
WEBHOOK_RETRY_BASE_SECONDS = env_int("WEBHOOK_RETRY_BASE_SECONDS", 30, minimum=1)
WEBHOOK_RETRY_MAX_SECONDS = env_int("WEBHOOK_RETRY_MAX_SECONDS", 4 * 3600, minimum=1)
# Sender threads in the process that leads the scheduler: at most this many endpoints
# are sent to at once (each endpoint one batch at a time).
WEBHOOK_CONCURRENCY = env_int("WEBHOOK_CONCURRENCY", 8, minimum=1)
# Off: URLs on loopback, private, link-local or reserved addresses are refused (at
# registration and again at every send, after DNS). On for receivers on your own
# network, and in tests.
WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", False)
# Days a finished delivery (succeeded or failed) stays in the log.
WEBHOOK_DELIVERY_RETENTION_DAYS = env_int("WEBHOOK_DELIVERY_RETENTION_DAYS", 30, minimum=1)

# Recovery tests only: the process SIGKILLs itself at this point of a run (see
# contracts/graph/faults.py). Never set in production.
TEST_KILL_AT = env_str("HITL_TEST_KILL_AT", "")
if TEST_KILL_AT:
    if not re.fullmatch(r"((after-(writes|interrupt)|before-node):[a-z_]+|after-checkpoint:-?\d+|before-outcome)(#[1-9])?", TEST_KILL_AT):
        raise ImproperlyConfigured(f"HITL_TEST_KILL_AT must name a point of contracts/graph/faults.py, got {TEST_KILL_AT!r}")

# --- Risk analysis --------------------------------------------------------------------

# "rules" is the deterministic analyser; "llm" adds a LangChain chat model to it (see
# contracts/graph/analyzer/llm.py) and needs the provider's integration package (an
# `llm-*` extra in pyproject.toml) and its key in the provider's own variable
# (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...).
RISK_ANALYZER = env_str("RISK_ANALYZER", "rules")
if RISK_ANALYZER not in {"rules", "llm"}:
    raise ImproperlyConfigured(f"RISK_ANALYZER must be 'rules' or 'llm', got {RISK_ANALYZER!r}")
# init_chat_model's model ("gpt-4o-mini", or "openai:gpt-4o-mini" with its provider) and
# model_provider (empty: inferred from the model's name).
RISK_LLM_MODEL = env_str("RISK_LLM_MODEL", "").strip()
RISK_LLM_PROVIDER = env_str("RISK_LLM_PROVIDER", "").strip()
if RISK_ANALYZER == "llm" and not RISK_LLM_MODEL:
    raise ImproperlyConfigured("RISK_LLM_MODEL must be set when RISK_ANALYZER is 'llm' (e.g. 'openai:gpt-4o-mini')")
if RISK_LLM_PROVIDER and not re.fullmatch(r"[a-z][a-z0-9_-]*", RISK_LLM_PROVIDER):
    raise ImproperlyConfigured(f"RISK_LLM_PROVIDER must be a provider name such as 'openai', got {RISK_LLM_PROVIDER!r}")
# After this long the LLM's answer is given up on and the rules' findings stand (the
# fallback is recorded on the contract). Below the run lease, so a slow model can never
# let a second worker take over the run.
RISK_LLM_TIMEOUT_SECONDS = env_int("RISK_LLM_TIMEOUT_SECONDS", 30, minimum=1)
if RISK_ANALYZER == "llm" and RISK_LLM_TIMEOUT_SECONDS >= RUN_LEASE_SECONDS:
    raise ImproperlyConfigured(
        f"RISK_LLM_TIMEOUT_SECONDS must be below RUN_LEASE_SECONDS ({RUN_LEASE_SECONDS}), got {RISK_LLM_TIMEOUT_SECONDS}"
    )

# --- Misc -----------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
LOGIN_URL = "/admin/login/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_choice("LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])},
    # Django's default configuration gives "django" a console handler of its own (in
    # DEBUG), so with the root's every request warning printed twice. One handler: root's.
    "loggers": {
        "django": {"level": "INFO", "propagate": True},
        # httpx logs every request at INFO; webhook outcomes are in the delivery log instead.
        "httpx": {"level": "WARNING"},
    },
}

# --- Static files -----------------------------------------------------------------------

# Served by WhiteNoise from the ASGI app (config/asgi_http.py streams them). Off DEBUG
# from STATIC_ROOT as `manage.py collectstatic` left it: names carry a content hash
# (cached for a year) and each file has a gzip copy next to it. In DEBUG straight from
# the apps' static folders, so a change shows without collecting again.
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- HTTPS behind a proxy (production) ------------------------------------------------

# Off by default (the embedded default speaks plain HTTP on 127.0.0.1); a deployment
# behind TLS turns them on, and `manage.py check --deploy` then passes.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Probes talk to the process directly, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
# The admin shows a new webhook secret once, in a message: kept in the session, not in
# Django's default message cookie (signed, not encrypted, and seen by every proxy log).
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
# The header a trusted proxy sets to the client's scheme, e.g. X-Forwarded-Proto. Set it
# only behind a proxy that overwrites that header: a client could otherwise claim https.
_PROXY_SSL_HEADER = env_str("SECURE_PROXY_SSL_HEADER", "")
if _PROXY_SSL_HEADER:
    if not all(c.isalnum() or c == "-" for c in _PROXY_SSL_HEADER):
        raise ImproperlyConfigured(
            f"SECURE_PROXY_SSL_HEADER must be a header name such as X-Forwarded-Proto, got {_PROXY_SSL_HEADER!r}"
        )
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _PROXY_SSL_HEADER.upper().replace("-", "_"), "https")
