"""The database backend's pool (config.postgresql): a connection that sat idle is tested
before it is handed out, one handed back moments ago is not."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import OperationalError, connection

from config.postgresql import base as pooled_backend
from tests.support import postgresql_only

pytestmark = [postgresql_only, pytest.mark.django_db(transaction=True)]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _terminate_idle_pooled_connections() -> int:
    """End every other idle session of the test database (the pool's connections); wait
    until they are gone."""
    db = connection.settings_dict
    dsn = f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={db['USER'] or 'postgres'} dbname={db['NAME']}"
    with psycopg.connect(dsn, autocommit=True) as killer:
        mine = killer.execute("SELECT pg_backend_pid()").fetchone()[0]
        victims = [row[0] for row in killer.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s AND state = 'idle'", [mine]
        )]
        for pid in victims:
            killer.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while killer.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [victims]).fetchone()[0]:
            assert time.monotonic() < deadline, "terminated sessions did not go away"
            time.sleep(0.02)
    return len(victims)


def test_a_connection_that_died_while_idle_is_replaced_before_it_is_handed_out(monkeypatch):
    monkeypatch.setattr(pooled_backend, "POOL_CHECK_AFTER_IDLE_SECONDS", 0.05)
    before = _backend_pid()
    connection.close()  # back to the pool
    assert _terminate_idle_pooled_connections() >= 1
    time.sleep(0.1)
    # The pool's connections all died while idle: the query gets a live one all the same.
    assert _backend_pid() != before


def test_a_connection_handed_back_moments_ago_is_not_tested_again(monkeypatch):
    # The round trip saved on every checkout: a backend killed inside the window fails
    # the one query that meets it, and the broken connection is then discarded.
    monkeypatch.setattr(pooled_backend, "POOL_CHECK_AFTER_IDLE_SECONDS", 60)
    _backend_pid()
    connection.close()
    assert _terminate_idle_pooled_connections() >= 1
    with pytest.raises(OperationalError):
        _backend_pid()
    connection.close()  # what a request's end does after an error: the pool drops it
    monkeypatch.setattr(pooled_backend, "POOL_CHECK_AFTER_IDLE_SECONDS", 0)
    assert _backend_pid() > 0
