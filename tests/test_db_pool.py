"""The connections a process keeps outliving their backends: the request pool
(config.postgresql) tests a connection that sat idle before handing it out, not one
handed back moments ago; a worker's checkpointer connection is tested before a pass
after sitting idle (contracts.graph.runner)."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import OperationalError, connection

from config.postgresql import base as pooled_backend
from contracts.graph import runner
from contracts.services import contract_submit
from reviews.models import ReviewTask
from tests.factories import HIGH_RISK_TEXT
from tests.support import fast_passwords, postgresql_only

pytestmark = [postgresql_only, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _fresh_connections_after(settings):
    fast_passwords(settings)
    yield
    # The sessions these tests end include this process's checkpointer connections.
    runner.contract_graph_close()
    runner.read_savers_close()


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


def test_a_workers_checkpointer_connection_ended_while_idle_is_replaced_before_a_pass(acme, monkeypatch):
    monkeypatch.setattr(pooled_backend, "POOL_CHECK_AFTER_IDLE_SECONDS", 0.05)
    monkeypatch.setattr(runner, "IDLE_CHECK_SECONDS", 0.05)
    # The test task backend drives inline, on this thread's own checkpointer connection.
    contract_submit(tenant=acme.tenant, submitted_by=acme.agent.user, title="first", text=HIGH_RISK_TEXT)
    connection.close()
    assert _terminate_idle_pooled_connections() >= 2  # the pool's and the checkpointer's
    time.sleep(0.1)
    second = contract_submit(tenant=acme.tenant, submitted_by=acme.agent.user, title="second", text=HIGH_RISK_TEXT)
    # Its first pass ran on a new connection instead of failing on the dead one.
    second.refresh_from_db()
    assert (second.status, second.run_attempts, second.last_error) == ("waiting_for_review", 0, "")
    assert ReviewTask.objects.filter(contract=second, kind="legal", status="pending").exists()
