"""config/env.py: every malformed value is an ImproperlyConfigured naming its variable,
and a misconfigured process refuses to start with a message that says why."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import cors_origins, database_from_url, env_bool, env_int, env_list, env_str, redis_url
from tests.support import HANG_GUARD_SECONDS, PROJECT_DIR, PYTHON

pytestmark = pytest.mark.embedded

BASE = Path("/srv/app")


@pytest.mark.parametrize("raw", ["maybe", "2", "tru", "yes please", "enabled"])
def test_malformed_bool_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("DEBUG", raw)
    with pytest.raises(ImproperlyConfigured, match=r"^DEBUG must be a boolean") as exc:
        env_bool("DEBUG", False)
    assert repr(raw) in str(exc.value)


@pytest.mark.parametrize("raw", ["inbox.example.com", "https://inbox.example.com/", "https://a.example/path",
                                 "*,https://a.example", "ftp://a.example", "https://a.example, https://"])
def test_malformed_cors_origins_name_the_variable(monkeypatch, raw):
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", raw)
    with pytest.raises(ImproperlyConfigured, match=r"^CORS_ALLOWED_ORIGINS entries must look like https://host"):
        cors_origins("CORS_ALLOWED_ORIGINS")


@pytest.mark.parametrize(("raw", "origins"), [
    ("", []), ("*", ["*"]), ("https://inbox.example.com", ["https://inbox.example.com"]),
    ("http://localhost:3000 , https://dev.agentinbox.ai", ["http://localhost:3000", "https://dev.agentinbox.ai"]),
])
def test_cors_origins_are_split_and_trimmed(monkeypatch, raw, origins):
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", raw)
    assert cors_origins("CORS_ALLOWED_ORIGINS") == origins


@pytest.mark.parametrize(
    ("raw", "value"), [("1", True), ("TRUE", True), (" on ", True), ("no", False), ("0", False), ("", False)]
)
def test_bool_accepts_the_usual_spellings(monkeypatch, raw, value):
    monkeypatch.setenv("DEBUG", raw)
    assert env_bool("DEBUG", not value) is value


def test_unset_values_take_their_default(monkeypatch):
    for name in ("DEBUG", "SOME_INT", "SOME_LIST", "SOME_STR"):
        monkeypatch.delenv(name, raising=False)
    assert env_bool("DEBUG", True) is True
    assert env_int("SOME_INT", 7) == 7
    assert env_list("SOME_LIST", ["a"]) == ["a"]
    assert env_str("SOME_STR", "x") == "x"


def test_a_required_string_that_is_unset_names_the_variable(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ImproperlyConfigured, match=r"^SECRET_KEY must be set$"):
        env_str("SECRET_KEY")


@pytest.mark.parametrize("raw", ["ten", "1.5", "", "0x10", "1e3"])
def test_malformed_int_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("RUN_LEASE_SECONDS", raw)
    with pytest.raises(ImproperlyConfigured, match=r"^RUN_LEASE_SECONDS must be an integer"):
        env_int("RUN_LEASE_SECONDS", 300, minimum=5)


def test_int_below_its_minimum_names_the_variable(monkeypatch):
    monkeypatch.setenv("RUN_LEASE_SECONDS", "4")
    with pytest.raises(ImproperlyConfigured, match=r"^RUN_LEASE_SECONDS must be at least 5, got 4$"):
        env_int("RUN_LEASE_SECONDS", 300, minimum=5)
    monkeypatch.setenv("RUN_LEASE_SECONDS", "5")
    assert env_int("RUN_LEASE_SECONDS", 300, minimum=5) == 5


@pytest.mark.parametrize("raw", ["", ",", " , ,"])
def test_empty_list_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("ALLOWED_HOSTS", raw)
    with pytest.raises(ImproperlyConfigured, match=r"^ALLOWED_HOSTS must be a comma-separated list"):
        env_list("ALLOWED_HOSTS", ["localhost"])


def test_list_is_split_and_trimmed(monkeypatch):
    monkeypatch.setenv("ALLOWED_HOSTS", " a.example , b.example,")
    assert env_list("ALLOWED_HOSTS", []) == ["a.example", "b.example"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@db/app", r"^DATABASE_URL must start with postgres:// or sqlite:///, got scheme 'mysql'"),
        ("db.example:5432/app", r"^DATABASE_URL must start with postgres://"),
        ("", r"^DATABASE_URL must start with postgres://"),
        ("postgres://db.example:5432/", r"^DATABASE_URL must name a database"),
        ("postgres://db.example:port/app", r"^DATABASE_URL has a malformed port"),
        ("postgres://db.example:99999/app", r"^DATABASE_URL has a malformed port"),
        ("sqlite://", r"^DATABASE_URL must name a file"),
    ],
)
def test_malformed_database_url_names_the_variable(url, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        database_from_url("DATABASE_URL", url, base_dir=BASE)


def test_postgres_url_is_translated():
    url = "postgresql://app:p%40ss@db.example:6543/hitl?sslmode=require"
    db = database_from_url("DATABASE_URL", url, base_dir=BASE)
    assert db["ENGINE"] == "config.postgresql"
    assert (db["NAME"], db["USER"], db["PASSWORD"]) == ("hitl", "app", "p@ss")
    assert (db["HOST"], db["PORT"]) == ("db.example", "6543")
    assert db["OPTIONS"]["sslmode"] == "require"
    # A connection pool, never per-thread persistent connections (they pile up under ASGI).
    assert db["OPTIONS"]["pool"]["max_size"] >= 1 and db["CONN_MAX_AGE"] == 0


@pytest.mark.parametrize(
    ("url", "name"),
    [("sqlite:///var/app.sqlite3", str(BASE / "var/app.sqlite3")), ("sqlite:////tmp/app.sqlite3", "/tmp/app.sqlite3")],
)
def test_sqlite_url_is_relative_to_the_project_or_absolute(url, name):
    db = database_from_url("DATABASE_URL", url, base_dir=BASE)
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    # sqlite://// keeps a POSIX "//" prefix ("//tmp/app.sqlite3"): the same file.
    assert os.path.realpath(db["NAME"]) == name


@pytest.mark.parametrize("raw", ["http://cache:6379/0", "cache:6379", "redis://", "redis:///0", "memcached://cache"])
def test_malformed_redis_url_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("REDIS_URL", raw)
    with pytest.raises(ImproperlyConfigured, match=r"^REDIS_URL must look like redis://host:6379/0"):
        redis_url("REDIS_URL")


@pytest.mark.parametrize(
    "raw", ["redis://cache:6379/0", "rediss://:secret@cache.example:6380/1", "unix:///run/redis.sock"]
)
def test_well_formed_redis_url_is_kept(monkeypatch, raw):
    monkeypatch.setenv("REDIS_URL", raw)
    assert redis_url("REDIS_URL") == raw


def test_empty_or_unset_redis_url_means_in_memory(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "")
    assert redis_url("REDIS_URL") is None
    monkeypatch.delenv("REDIS_URL")
    assert redis_url("REDIS_URL") is None


# --- Start-up in a fresh process, with nothing but what the test sets ----------------

GOOD_KEY = "k" * 50


def start(**variables: str) -> subprocess.CompletedProcess:
    """Load the settings the way a server does, in a clean environment."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DJANGO_SETTINGS_MODULE": "config.settings", **variables}
    return subprocess.run(
        [PYTHON, "-c", "import django; django.setup(); print('started')"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
    )


def test_start_up_without_secret_key_and_debug_off_fails_clearly():
    result = start()
    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured: SECRET_KEY must be set" in result.stderr
    assert "started" not in result.stdout


def test_start_up_with_debug_on_gets_a_development_key():
    result = start(DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 32 characters long"),
        ({"SECRET_KEY": GOOD_KEY, "DEBUG": "maybe"}, "DEBUG must be a boolean (true/false/1/0), got 'maybe'"),
        ({"SECRET_KEY": GOOD_KEY, "DATABASE_URL": "mysql://db/app"}, "DATABASE_URL must start with postgres://"),
        ({"SECRET_KEY": GOOD_KEY, "REDIS_URL": "http://cache"}, "REDIS_URL must look like redis://host:6379/0"),
        ({"SECRET_KEY": GOOD_KEY, "RUN_LEASE_SECONDS": "soon"}, "RUN_LEASE_SECONDS must be an integer, got 'soon'"),
        (
            {"SECRET_KEY": GOOD_KEY, "DATA_UPLOAD_MAX_MEMORY_SIZE": "10"},
            "DATA_UPLOAD_MAX_MEMORY_SIZE must be at least 1024",
        ),
        ({"SECRET_KEY": GOOD_KEY, "TASKS_BACKEND": "celery"}, "TASKS_BACKEND must be one of ['database', 'immediate']"),
        ({"SECRET_KEY": GOOD_KEY, "RISK_ANALYZER": "gpt"}, "RISK_ANALYZER must be 'rules' or 'llm', got 'gpt'"),
        ({"SECRET_KEY": GOOD_KEY, "RISK_ANALYZER": "llm"}, "RISK_LLM_MODEL must be set when RISK_ANALYZER is 'llm'"),
        (
            {"SECRET_KEY": GOOD_KEY, "RISK_LLM_PROVIDER": "Open AI"},
            "RISK_LLM_PROVIDER must be a provider name such as 'openai', got 'Open AI'",
        ),
        ({"SECRET_KEY": GOOD_KEY, "RISK_LLM_TIMEOUT_SECONDS": "soon"}, "RISK_LLM_TIMEOUT_SECONDS must be an integer"),
        (
            {"SECRET_KEY": GOOD_KEY, "RISK_ANALYZER": "llm", "RISK_LLM_MODEL": "openai:gpt-4o-mini",
             "RISK_LLM_TIMEOUT_SECONDS": "60"},
            "RISK_LLM_TIMEOUT_SECONDS must be below RUN_LEASE_SECONDS (60), got 60",
        ),
        # Before, these started and then broke every throttled request (500) or every form post.
        ({"SECRET_KEY": GOOD_KEY, "API_THROTTLE_RATE": "lots"}, "API_THROTTLE_RATE must look like 1200/minute"),
        ({"SECRET_KEY": GOOD_KEY, "API_THROTTLE_RATE": "10/fortnight"}, "API_THROTTLE_RATE must look like"),
        ({"SECRET_KEY": GOOD_KEY, "LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of"),
        ({"SECRET_KEY": GOOD_KEY, "CSRF_TRUSTED_ORIGINS": "review.example"}, "CSRF_TRUSTED_ORIGINS entries must look"),
        ({"SECRET_KEY": GOOD_KEY, "SECURE_HSTS_SECONDS": "a year"}, "SECURE_HSTS_SECONDS must be an integer"),
        ({"SECRET_KEY": GOOD_KEY, "SECURE_SSL_REDIRECT": "always"}, "SECURE_SSL_REDIRECT must be a boolean"),
        ({"SECRET_KEY": GOOD_KEY, "SECURE_PROXY_SSL_HEADER": "X Forwarded"}, "SECURE_PROXY_SSL_HEADER must be a header"),
        ({"SECRET_KEY": GOOD_KEY, "QUEUE_STREAM_POLL_MS": "fast"}, "QUEUE_STREAM_POLL_MS must be an integer"),
    ],
)
def test_start_up_with_a_malformed_variable_fails_naming_it(variables, message):
    result = start(**variables)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {message}" in result.stderr, result.stderr[-2000:]


def test_start_up_with_a_complete_environment_succeeds():
    result = start(
        SECRET_KEY=GOOD_KEY,
        DATABASE_URL="postgres://app@db.example:5432/hitl",
        REDIS_URL="redis://cache:6379/0",
        TASKS_BACKEND="database",
    )
    assert result.returncode == 0, result.stderr


def check_deploy(**variables: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DJANGO_SETTINGS_MODULE": "config.settings",
           "SECRET_KEY": "x7Kp2mQ9vL4nR8tW1yB6cF3hJ5dG0sA-zXeUiOoPqMnBvCx_Lk", "DATABASE_URL": "sqlite:////tmp/x.db",
           "ALLOWED_HOSTS": "review.example", **variables}
    return subprocess.run([PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=PROJECT_DIR,
                          env=env, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)


def test_check_deploy_passes_with_the_https_settings_from_the_environment():
    result = check_deploy(SECURE_SSL_REDIRECT="true", SECURE_HSTS_SECONDS="31536000",
                          SECURE_HSTS_INCLUDE_SUBDOMAINS="true", SECURE_HSTS_PRELOAD="true",
                          SESSION_COOKIE_SECURE="true", CSRF_COOKIE_SECURE="true",
                          SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto", CSRF_TRUSTED_ORIGINS="https://review.example")
    assert result.returncode == 0, result.stdout + result.stderr
    # ...and without them it says what is missing.
    bare = check_deploy()
    assert bare.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in bare.stdout + bare.stderr


def test_the_proxy_header_setting_names_the_wsgi_key():
    result = subprocess.run(
        [PYTHON, "-c", "import django; django.setup(); from django.conf import settings; "
                       "print(settings.SECURE_PROXY_SSL_HEADER)"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS,
        env={"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "config.settings", "SECRET_KEY": GOOD_KEY,
             "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"},
    )
    assert result.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')", result.stderr
