"""Resume with an Idempotency-Key: a retry replays the first response and has no second
effect; a key reused for another request is refused; under a storm of concurrent retries
exactly one decision is applied."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from contracts.graph.runner import postgres_connect
from contracts.models import Contract
from contracts.services import contract_submit
from reviews.models import IdempotencyRecord, ReviewTask
from tenants.models import AuditRecord
from tests.factories import HIGH_RISK_TEXT
from tests.support import postgresql_only, race, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def legal_task(world) -> ReviewTask:
    contract = contract_submit(tenant=world.tenant, submitted_by=world.agent.user, title="MSA", text=HIGH_RISK_TEXT)
    return ReviewTask.objects.get(contract=contract, kind="legal")


def resume(client: APIClient, world, task_id, body: Any, key: str | None = None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(world.url(f"reviews/{task_id}/resume/"), body, format="json", **headers)


def resolved_records(task: ReviewTask) -> int:
    return AuditRecord.objects.filter(target_type="reviewtask", target_id=str(task.pk), action="review.resolved").count()


def test_a_retry_with_the_same_key_and_body_replays_the_first_response(acme):
    task = legal_task(acme)
    body = {"decision": "amend", "amendments": ["Cap liability at fees paid."], "comment": "see 4.2"}

    first = resume(acme.reviewer.client, acme, task.pk, body, key="retry-1")
    assert first.status_code == 202, first.content
    assert first.headers["Idempotent-Replayed"] == "false"
    contract = Contract.objects.get(pk=task.contract_id)
    assert contract.status == "amended"  # the graph ran once, on commit

    for _ in range(3):
        again = resume(acme.reviewer.client, acme, task.pk, body, key="retry-1")
        assert again.status_code == first.status_code
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"

    task.refresh_from_db()
    assert task.decision["amendments"] == ["Cap liability at fees paid."]
    assert resolved_records(task) == 1
    assert IdempotencyRecord.objects.filter(tenant=acme.tenant, user=acme.reviewer.user).count() == 1
    contract.refresh_from_db()
    assert [(h["decision"], h["decided_by_username"]) for h in contract.decision_history] == [("amend", "acme-reviewer")]
    assert contract.amendments == ["Cap liability at fees paid."]


def test_the_same_key_with_another_body_is_422(acme):
    task = legal_task(acme)
    assert resume(acme.reviewer.client, acme, task.pk, {"decision": "approve"}, key="k-1").status_code == 202

    reused = resume(acme.reviewer.client, acme, task.pk, {"decision": "reject"}, key="k-1")
    assert reused.status_code == 422
    error = reused.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in error["fields"]
    assert "Idempotent-Replayed" not in reused.headers

    task.refresh_from_db()
    assert task.decision["decision"] == "approve"
    assert resolved_records(task) == 1
    assert Contract.objects.get(pk=task.contract_id).status == "approved"


def test_the_same_key_on_another_task_is_422(acme):
    first, second = legal_task(acme), legal_task(acme)
    assert resume(acme.reviewer.client, acme, first.pk, {"decision": "approve"}, key="k-2").status_code == 202
    reused = resume(acme.reviewer.client, acme, second.pk, {"decision": "approve"}, key="k-2")
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    second.refresh_from_db()
    assert second.status == "pending"


def test_keys_belong_to_their_user(acme):
    """Another member sending the same key and body is not a retry of the first one's
    request: no replay of someone else's receipt, just the usual conflict."""
    task = legal_task(acme)
    assert resume(acme.reviewer.client, acme, task.pk, {"decision": "approve"}, key="shared").status_code == 202
    other = resume(acme.senior.client, acme, task.pk, {"decision": "approve"}, key="shared")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "conflict"


def test_a_failed_attempt_is_not_remembered(acme):
    task = legal_task(acme)
    acme.senior.client.post(acme.url(f"reviews/{task.pk}/claim/"))
    refused = resume(acme.reviewer.client, acme, task.pk, {"decision": "approve"}, key="k-3")
    assert refused.status_code == 409
    acme.senior.client.post(acme.url(f"reviews/{task.pk}/release/"))
    # The same key again, now that the claim is gone: a first attempt, not a replay.
    retried = resume(acme.reviewer.client, acme, task.pk, {"decision": "approve"}, key="k-3")
    assert retried.status_code == 202
    assert retried.headers["Idempotent-Replayed"] == "false"


def test_an_invalid_key_is_400_naming_it(acme):
    task = legal_task(acme)
    for key in ("", "k" * 201):
        response = resume(acme.reviewer.client, acme, task.pk, {"decision": "approve"}, key=key)
        assert response.status_code == 400, key
        assert "Idempotency-Key" in response.json()["error"]["fields"]
    assert resume(acme.reviewer.client, acme, task.pk, {"decision": "approve"}, key="k" * 200).status_code == 202


def test_idempotent_resume_keeps_tenant_isolation_and_permissions(acme, globex):
    task = legal_task(acme)
    foreign = resume(globex.admin.client, globex, task.pk, {"decision": "approve"}, key="k-4")
    missing = resume(globex.admin.client, globex, uuid.uuid4(), {"decision": "approve"}, key="k-4")
    assert (foreign.status_code, foreign.json()) == (404, missing.json())
    assert resume(acme.viewer.client, acme, task.pk, {"decision": "approve"}, key="k-4").status_code == 403
    task.refresh_from_db()
    assert task.status == "pending"
    assert not IdempotencyRecord.objects.exists()


# --- A storm of retries ----------------------------------------------------------------------

KEYS = 10
RETRIES = 10
THREADS = 25  # 100 calls over 25 connections: the shared PostgreSQL has ~100 in all


@contextmanager
def connection_pool_of(size: int) -> Iterator[None]:
    """Let `size` threads hold a database connection at once: the product's pool gives a
    process 8, and race() takes each thread's connection before its barrier (a thread
    past the pool would time out there and leave the others waiting)."""
    options = connection.settings_dict["OPTIONS"]
    saved = options.get("pool")
    if not saved:
        yield
        return
    connection.close()
    connection.close_pool()
    options["pool"] = {**(saved if isinstance(saved, dict) else {}), "max_size": size}
    try:
        yield
    finally:
        connection.close()
        connection.close_pool()
        options["pool"] = saved


@postgresql_only
def test_a_hundred_concurrent_resumes_apply_one_decision(acme):
    """Ten clients (keys) across four users each retry their own request ten times, all at
    once. One request wins; its retries replay its receipt; everything else is a 409."""
    task = legal_task(acme)
    deciders = [acme.reviewer, acme.reviewer2, acme.senior, acme.admin]
    owner = {k: deciders[k % len(deciders)] for k in range(KEYS)}
    bodies = {k: {"decision": "approve" if k % 2 else "reject", "comment": f"key {k}"} for k in range(KEYS)}
    calls = [k for _ in range(RETRIES) for k in range(KEYS)]  # interleaved: k0, k1, ..., k9, k0, ...

    def attempt(thread: int) -> list[tuple[int, int, str | None, dict | None]]:
        out = []
        for call in range(thread, len(calls), THREADS):
            key = calls[call]
            # One client per call, and no re-raising: the test client would otherwise
            # re-raise another thread's unhandled exception in this one.
            client = APIClient(raise_request_exception=False)
            client.credentials(HTTP_AUTHORIZATION=f"Token {owner[key].token}")
            response = resume(client, acme, task.pk, bodies[key], key=f"storm-{key}")
            body = response.json() if response.status_code != 500 else None
            out.append((key, response.status_code, response.headers.get("Idempotent-Replayed"), body))
        return out

    with connection_pool_of(THREADS + 1):
        results = race(THREADS, attempt)
    assert all(outcome == "ok" for outcome, _ in results), [value for outcome, value in results if outcome != "ok"]
    responses = [item for _, items in results for item in items]
    assert len(responses) == KEYS * RETRIES

    fresh = [(key, body) for key, status, replayed, body in responses if status == 202 and replayed == "false"]
    assert len(fresh) == 1, Counter((s, r) for _, s, r, _ in responses)
    [(winner, receipt)] = fresh
    for key, status, replayed, body in responses:
        if key == winner:
            # Every call with the winning key: the one original, or a replay of it.
            assert status == 202, (key, status, body)
            assert body == receipt
        else:
            assert status == 409, (key, status, replayed, body)
            assert body["error"]["code"] == "conflict" and body["error"]["status"] == "resolved"
            assert replayed is None
    assert Counter(replayed for key, _, replayed, _ in responses if key == winner) == {"false": 1, "true": RETRIES - 1}

    task.refresh_from_db()
    assert task.status == "resolved"
    assert task.decided_by_id == owner[winner].user.pk
    assert task.decision["comment"] == f"key {winner}"
    assert task.decision["decision"] == bodies[winner]["decision"]
    assert resolved_records(task) == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == [f"storm-{winner}"]
    contract = Contract.objects.get(pk=task.contract_id)
    assert len(contract.decision_history) == 1
    assert contract.decision_history[0]["comment"] == f"key {winner}"
    assert contract.status == {"approve": "approved", "reject": "rejected"}[bodies[winner]["decision"]]


@postgresql_only
def test_one_key_raced_on_two_tasks_is_one_202_and_one_422(acme):
    """The task row lock serialises one key on one task only. Regression: two first uses
    of one key on two tasks both found no record and the second insert hit the unique
    constraint: an IntegrityError, a 500."""
    first, second = legal_task(acme), legal_task(acme)
    box: dict[str, Any] = {}

    def resume_in_thread(name: str, task: ReviewTask) -> threading.Thread:
        def run() -> None:
            try:
                client = APIClient(raise_request_exception=False)
                client.credentials(HTTP_AUTHORIZATION=f"Token {acme.reviewer.token}")
                box[name] = resume(client, acme, task.pk, {"decision": "approve"}, key="one-key").status_code
            finally:
                connection.close()

        thread = threading.Thread(target=run, name=name)
        thread.start()
        return thread

    # Hold an uncommitted record with that key: both requests pass the "seen this key?"
    # check, then queue on the unique index. Rolling it back lets them collide.
    with postgres_connect() as probe:
        with pytest.raises(_RolledBack), transaction.atomic():
            IdempotencyRecord.objects.create(tenant=acme.tenant, user=acme.reviewer.user, key="one-key",
                                             fingerprint="x", response_status=202, response_body={})
            threads = [resume_in_thread("first", first), resume_in_thread("second", second)]
            wait_until(lambda: _lock_waiters(probe) >= 2, what="both resumes waiting on the key")
            raise _RolledBack
    for thread in threads:
        thread.join()

    assert sorted([box["first"], box["second"]]) == [202, 422], box
    first.refresh_from_db()
    second.refresh_from_db()
    assert sorted([first.status, second.status]) == ["pending", "resolved"]


class _RolledBack(Exception):
    pass


def _lock_waiters(probe) -> int:
    row = probe.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    return row["n"]
