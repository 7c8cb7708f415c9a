"""`manage.py reconcile_reviews` puts the database back in step with the checkpoints
after a crash at each point where the two can disagree, applies every decision exactly
once, and changes nothing when run again."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from contracts import services
from contracts.graph import runner
from contracts.models import Contract
from reviews.models import ReviewTask
from reviews.services import review_task_resume
from tests.factories import CRITICAL_RISK_TEXT, HIGH_RISK_TEXT
from tests.support import checkpoint_trail, fast_passwords, graph_runs_spy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

# A queue that accepts messages and never delivers them: a lost queue message.
LOST_MESSAGES = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    fast_passwords(settings)


@pytest.fixture
def graph_calls(monkeypatch) -> list[tuple]:
    return graph_runs_spy(monkeypatch)


def reconcile() -> str:
    out = StringIO()
    call_command("reconcile_reviews", stdout=out)
    return out.getvalue()


def submitted(world, text: str = HIGH_RISK_TEXT) -> tuple[Contract, ReviewTask]:
    contract = services.contract_submit(tenant=world.tenant, submitted_by=world.agent.user, title="MSA", text=text)
    contract.refresh_from_db()
    assert contract.status == "waiting_for_review"
    [task] = ReviewTask.objects.filter(contract=contract)
    return contract, task


def legal_entries(contract: Contract) -> list[dict]:
    return [h for h in contract.decision_history if h["kind"] == "legal"]


def test_a_crash_between_checkpoint_and_task_insert_recreates_the_task_once(acme, graph_calls):
    contract, task = submitted(acme)
    interrupt_id = task.interrupt_id
    trail = checkpoint_trail(contract.thread_id)
    # The graph checkpointed its interrupt, then the process died before recording it.
    ReviewTask.objects.filter(contract=contract).delete()
    Contract.objects.filter(pk=contract.pk).update(status="submitted")
    graph_calls.clear()

    assert "reconciled 1 contract(s)" in reconcile()

    [recreated] = ReviewTask.objects.filter(contract=contract)
    assert recreated.interrupt_id == interrupt_id
    assert recreated.kind == "legal" and recreated.status == "pending"
    assert recreated.payload["risk_score"] == pytest.approx(0.8245)
    contract.refresh_from_db()
    assert contract.status == "waiting_for_review"
    assert contract.run_lease_owner == ""
    # Recovery read the checkpoint; it did not run the graph again.
    assert graph_calls == []
    assert checkpoint_trail(contract.thread_id) == trail

    reconcile()
    assert list(ReviewTask.objects.filter(contract=contract)) == [recreated]
    assert graph_calls == []
    assert checkpoint_trail(contract.thread_id) == trail

    # And the re-created task works.
    review_task_resume(tenant=acme.tenant, task_id=recreated.pk, user=acme.reviewer.user, data={"decision": "approve"})
    contract.refresh_from_db()
    assert contract.status == "approved" and len(contract.decision_history) == 1


def test_a_crash_before_the_first_run_starts_it(acme, settings):
    settings.TASKS = LOST_MESSAGES
    contract = services.contract_submit(
        tenant=acme.tenant, submitted_by=acme.agent.user, title="MSA", text=HIGH_RISK_TEXT
    )
    assert not runner.thread_snapshot(contract.thread_id).exists

    reconcile()

    contract.refresh_from_db()
    assert contract.status == "waiting_for_review"
    assert ReviewTask.objects.filter(contract=contract).count() == 1
    reconcile()
    assert ReviewTask.objects.filter(contract=contract).count() == 1


def test_b_a_recorded_decision_whose_resume_was_lost_is_applied_once(acme, settings, graph_calls):
    contract, task = submitted(acme)
    settings.TASKS = LOST_MESSAGES
    review_task_resume(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user, data={"decision": "approve"})

    contract.refresh_from_db()
    task.refresh_from_db()
    assert contract.status == "waiting_for_review"
    assert task.status == "resolved" and task.applied_at is None
    assert [p.id for p in runner.thread_snapshot(contract.thread_id).pending] == [task.interrupt_id]
    graph_calls.clear()

    reconcile()

    contract.refresh_from_db()
    task.refresh_from_db()
    assert contract.status == "approved"
    assert task.applied_at is not None
    assert graph_calls == [("resume", contract.thread_id, [task.interrupt_id])]
    assert [(h["decision"], h["task_id"]) for h in legal_entries(contract)] == [("approve", str(task.pk))]
    snapshot = runner.thread_snapshot(contract.thread_id)
    assert snapshot.finished and len(snapshot.values["history"]) == 1
    trail, applied_at, updated_at = checkpoint_trail(contract.thread_id), task.applied_at, contract.updated_at

    assert "reconciled 0 contract(s)" in reconcile()
    assert len(graph_calls) == 1
    contract.refresh_from_db()
    task.refresh_from_db()
    assert checkpoint_trail(contract.thread_id) == trail
    assert (task.applied_at, contract.updated_at) == (applied_at, updated_at)
    assert len(contract.decision_history) == 1


def test_c_a_decision_the_graph_consumed_but_not_recorded_is_never_resent(acme, settings, graph_calls):
    contract, task = submitted(acme)
    settings.TASKS = LOST_MESSAGES
    review_task_resume(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user, data={"decision": "approve"})
    task.refresh_from_db()
    # A drive resumed the graph and died before recording the outcome.
    runner.thread_resume(contract.thread_id, {task.interrupt_id: task.decision})
    trail = checkpoint_trail(contract.thread_id)
    assert runner.thread_snapshot(contract.thread_id).finished
    graph_calls.clear()

    reconcile()

    assert graph_calls == []  # the consumed interrupt id was not sent again
    assert checkpoint_trail(contract.thread_id) == trail
    task.refresh_from_db()
    contract.refresh_from_db()
    assert task.applied_at is not None
    assert contract.status == "approved"
    assert len(legal_entries(contract)) == 1 and len(contract.decision_history) == 1
    assert "reconciled 0 contract(s)" in reconcile()


def test_c_a_consumed_legal_decision_is_not_resent_to_the_signoff_that_follows(acme, settings, graph_calls):
    """The dangerous case: after legal approval of a critical contract the thread waits
    for a sign-off. Re-sending the consumed legal answer must not reach that sign-off."""
    contract, legal = submitted(acme, CRITICAL_RISK_TEXT)
    settings.TASKS = LOST_MESSAGES
    review_task_resume(tenant=acme.tenant, task_id=legal.pk, user=acme.senior.user, data={"decision": "approve"})
    legal.refresh_from_db()
    runner.thread_resume(contract.thread_id, {legal.interrupt_id: legal.decision})
    [signoff_interrupt] = runner.thread_snapshot(contract.thread_id).pending
    assert signoff_interrupt.kind == "signoff"
    trail = checkpoint_trail(contract.thread_id)
    graph_calls.clear()

    reconcile()
    reconcile()

    assert graph_calls == []
    assert checkpoint_trail(contract.thread_id) == trail
    assert [p.id for p in runner.thread_snapshot(contract.thread_id).pending] == [signoff_interrupt.id]
    legal.refresh_from_db()
    assert legal.applied_at is not None
    [signoff] = ReviewTask.objects.filter(contract=contract, kind="signoff")
    assert signoff.interrupt_id == signoff_interrupt.id
    assert signoff.status == "pending" and signoff.decision is None
    contract.refresh_from_db()
    assert contract.status == "waiting_for_review"
    assert [h["kind"] for h in contract.decision_history] == ["legal"]
