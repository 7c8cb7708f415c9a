"""Exactly-once under real concurrency, on PostgreSQL: many threads, each with its own
database connection and checkpointer, released together by a barrier."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from config.api_errors import Conflict
from contracts import services
from contracts.graph import runner
from contracts.models import Contract
from reviews.models import ReviewStatus, ReviewTask
from reviews.services import review_task_resume
from tests.factories import HIGH_RISK_TEXT
from tests.support import checkpoint_trail, fast_passwords, graph_runs_spy, postgresql_only, race

pytestmark = [pytest.mark.django_db(transaction=True), postgresql_only]

ATTEMPTS = 20


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    fast_passwords(settings)


def high_risk_contract(world) -> tuple[Contract, ReviewTask]:
    contract = services.contract_submit(
        tenant=world.tenant, submitted_by=world.agent.user, title="MSA", text=HIGH_RISK_TEXT
    )
    contract.refresh_from_db()
    assert contract.status == "waiting_for_review"
    [task] = ReviewTask.objects.filter(contract=contract)
    return contract, task


def deciders(world):
    return [world.reviewer, world.reviewer2, world.senior, world.admin]


def reference_trail(world) -> list[tuple[str, int]]:
    """The checkpoint trail of the same contract resumed once, by one caller, alone."""
    contract, task = high_risk_contract(world)
    review_task_resume(tenant=world.tenant, task_id=task.pk, user=world.reviewer.user, data={"decision": "approve"})
    contract.refresh_from_db()
    assert contract.status == "approved"
    return checkpoint_trail(contract.thread_id)


def test_twenty_racing_resumes_record_one_decision_and_advance_the_graph_once(acme, monkeypatch):
    expected_trail = reference_trail(acme)
    contract, task = high_risk_contract(acme)
    before = checkpoint_trail(contract.thread_id)
    graph_runs = graph_runs_spy(monkeypatch)
    members = deciders(acme)

    def attempt(i: int) -> ReviewTask:
        decision = "approve" if i % 2 == 0 else "reject"
        return review_task_resume(
            tenant=acme.tenant,
            task_id=task.pk,
            user=members[i % len(members)].user,
            data={"decision": decision, "comment": f"attempt {i}"},
        )

    results = race(ATTEMPTS, attempt)

    winners = [(i, value) for i, (outcome, value) in enumerate(results) if outcome == "ok"]
    losers = [value for outcome, value in results if outcome == "error"]
    assert len(winners) == 1, results
    assert len(losers) == ATTEMPTS - 1
    assert all(isinstance(exc, Conflict) for exc in losers), [repr(e) for e in losers]
    assert {exc.extra["status"] for exc in losers} == {"resolved"}

    index, returned = winners[0]
    winner_user = members[index % len(members)].user
    winner_decision = "approve" if index % 2 == 0 else "reject"
    assert returned.status == ReviewStatus.RESOLVED

    task.refresh_from_db()
    assert task.status == ReviewStatus.RESOLVED
    assert task.decided_by_id == winner_user.pk
    assert task.decision["decision"] == winner_decision
    assert task.decision["comment"] == f"attempt {index}"
    assert task.applied_at is not None

    contract.refresh_from_db()
    assert contract.status == {"approve": "approved", "reject": "rejected"}[winner_decision]
    assert [(h["kind"], h["decision"], h["comment"], h["decided_by"]) for h in contract.decision_history] == [
        ("legal", winner_decision, f"attempt {index}", winner_user.pk)
    ]
    assert ReviewTask.objects.filter(contract=contract).count() == 1

    assert graph_runs == [("resume", contract.thread_id, [task.interrupt_id])]
    # The graph ran the resume once: the "loop" checkpoints written after the interrupt
    # are exactly those of a lone, sequential resume (a second resume would add more).
    after = checkpoint_trail(contract.thread_id)
    assert before == expected_trail[: len(before)]
    loops_after_interrupt = [entry for entry in after[len(before) :] if entry[0] == "loop"]
    assert loops_after_interrupt == [entry for entry in expected_trail[len(before) :] if entry[0] == "loop"]
    assert loops_after_interrupt
    assert after == expected_trail
    snapshot = runner.thread_snapshot(contract.thread_id)
    assert snapshot.finished and len(snapshot.values["history"]) == 1


def test_twenty_racing_resumes_over_the_api_give_one_202_and_nineteen_409(acme):
    contract, task = high_risk_contract(acme)
    tokens = [member.token for member in deciders(acme)]
    url = acme.url(f"reviews/{task.pk}/resume/")

    def attempt(i: int):
        client = APIClient()  # one client per thread: a test client is not thread-safe
        client.credentials(HTTP_AUTHORIZATION=f"Token {tokens[i % len(tokens)]}")
        response = client.post(url, {"decision": "approve", "comment": f"attempt {i}"}, format="json")
        return response.status_code, response.json()

    results = race(ATTEMPTS, attempt)

    assert all(outcome == "ok" for outcome, _ in results), results
    statuses = sorted(status for _, (status, _) in results)
    assert statuses == [202] + [409] * (ATTEMPTS - 1)
    [winner_body] = [body for _, (status, body) in results if status == 202]
    assert {body["error"]["code"] for _, (status, body) in results if status == 409} == {"conflict"}

    task.refresh_from_db()
    assert task.decision["comment"] == winner_body["decision"]["comment"]
    contract.refresh_from_db()
    assert contract.status == "approved"
    assert [h["comment"] for h in contract.decision_history] == [winner_body["decision"]["comment"]]


def test_racing_lease_acquisitions_grant_exactly_one(acme):
    contract, _ = high_risk_contract(acme)
    assert contract.run_lease_owner == "" and contract.run_lease_until is None

    results = race(
        ATTEMPTS,
        lambda i: services._run_lease_acquire(tenant_id=acme.tenant.id, contract_id=contract.pk, owner=f"owner-{i}"),
    )

    assert all(outcome == "ok" for outcome, _ in results), results
    granted = [i for i, (_, taken) in enumerate(results) if taken]
    assert len(granted) == 1
    contract.refresh_from_db()
    assert contract.run_lease_owner == f"owner-{granted[0]}"


def test_racing_drives_of_one_contract_run_the_graph_once(acme, settings, monkeypatch):
    expected_trail = reference_trail(acme)
    contract, task = high_risk_contract(acme)
    # Record the decision without driving (its queue message goes nowhere), so the
    # racing drives below are the only ones that could apply it.
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}
    review_task_resume(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user, data={"decision": "approve"})
    at_interrupt = checkpoint_trail(contract.thread_id)
    assert len(at_interrupt) < len(expected_trail) and at_interrupt == expected_trail[: len(at_interrupt)]

    graph_runs = graph_runs_spy(monkeypatch)

    results = race(
        ATTEMPTS // 2, lambda i: services.contract_drive(tenant_id=acme.tenant.id, contract_id=contract.pk)
    )

    assert all(outcome == "ok" for outcome, _ in results), results
    assert graph_runs == [("resume", contract.thread_id, [task.interrupt_id])]
    contract.refresh_from_db()
    assert contract.status == "approved"
    assert contract.run_lease_owner == "" and contract.run_lease_until is None
    assert len(contract.decision_history) == 1
    assert checkpoint_trail(contract.thread_id) == expected_trail
