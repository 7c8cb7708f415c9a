"""Settings read from the environment.

Every reader raises ImproperlyConfigured with the variable's name on a malformed
value, so a bad deployment fails at start-up instead of at the first request.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"{name} must be set")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise ImproperlyConfigured(f"{name} must be a comma-separated list, got {raw!r}")
    return items


def env_choice(name: str, default: str, choices: list[str]) -> str:
    value = os.environ.get(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {choices}, got {value!r}")
    return value


# DRF reads a rate as "<count>/<period>" and looks only at the period's first letter, so
# "lots" or "10/fortnight" would pass start-up and then fail every throttled request.
_RATE = re.compile(r"[1-9][0-9]*/(?:second|minute|hour|day|s|m|h|d)")


def env_rate(name: str, default: str) -> str:
    value = os.environ.get(name, default).strip()
    if not _RATE.fullmatch(value):
        raise ImproperlyConfigured(f"{name} must look like 1200/minute (per second, minute, hour or day), got {value!r}")
    return value


def env_origins(name: str, default: list[str]) -> list[str]:
    """Origins with their scheme, as Django's CSRF check compares them: a bare host
    never matches any request, so it would only break every form post."""
    origins = env_list(name, default)
    for origin in origins:
        if not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ImproperlyConfigured(f"{name} entries must look like https://host[:port], got {origin!r}")
    return origins


def cors_origins(name: str) -> list[str]:
    """Origins allowed to call from a browser: comma-separated, each as env_origins
    reads them, or "*" alone for any; unset or empty: none."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return []
    if raw == "*":
        return ["*"]
    return env_origins(name, [])


def database_from_url(name: str, url: str, *, base_dir: Path) -> dict:
    """Translate `postgres://user:pass@host:port/db` or `sqlite:///path` into a
    Django DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            path = path.lstrip("/")
        if not path:
            raise ImproperlyConfigured(f"{name} must name a file: sqlite:///path/to/db.sqlite3")
        file = Path(path)
        if not file.is_absolute():
            file = base_dir / file
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(file),
            # IMMEDIATE: a write transaction takes the write lock at BEGIN, so two
            # writers queue instead of failing with "database is locked" on upgrade.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
            # Tests get a file beside it, not Django's default in-memory database, whose
            # shared cache locks by table and fails a second thread's write at once
            # ("database table is locked") where the file waits for the lock as it does
            # in production (webhook senders, racing requests in one test process).
            "TEST": {"NAME": str(file.with_name(f"test_{file.name}"))},
        }
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ImproperlyConfigured(f"{name} must name a database: postgres://host:5432/dbname")
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"{name} has a malformed port: {url!r}") from None
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        return {
            "ENGINE": "config.postgresql",
            "NAME": database,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(port or ""),
            # A connection pool, not CONN_MAX_AGE: under ASGI every request runs in a new
            # thread, so persistent per-thread connections are never reused and pile up
            # until garbage-collected. The pool keeps a few per process and reuses them.
            "OPTIONS": {
                "pool": {"min_size": 1, "max_size": env_int("DATABASE_POOL_SIZE", 10, minimum=1), "timeout": 10},
                **options,
            },
            "CONN_MAX_AGE": 0,
            # Django's check would test every connection before it is handed out; the
            # backend (config.postgresql) tests those that sat idle, so one that died
            # meanwhile (a database restart, a terminated backend) is replaced instead
            # of failing its request.
            "CONN_HEALTH_CHECKS": False,
        }
    raise ImproperlyConfigured(
        f"{name} must start with postgres:// or sqlite:///, got scheme {parts.scheme!r}"
    )


def redis_url(name: str) -> str | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    parts = urlsplit(raw)
    if parts.scheme not in {"redis", "rediss", "unix"} or (parts.scheme != "unix" and not parts.hostname):
        raise ImproperlyConfigured(f"{name} must look like redis://host:6379/0, got {raw!r}")
    return raw
