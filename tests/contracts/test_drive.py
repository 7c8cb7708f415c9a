"""The drive finishes whatever a run started, from wherever it stopped; a decision counts
as applied only once the graph has moved past it; a drive that cannot make progress stops
and says why; failing runs are retried with backoff, then `failed`, then an admin's retry
runs them again. In-process, on the immediate task backend (each drive runs on commit)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from langgraph.types import Command

from contracts import services
from contracts.graph import nodes, runner
from contracts.graph.runner import contract_graph, thread_snapshot
from contracts.models import Contract
from reviews.models import QueueEvent, ReviewTask
from reviews.services import review_task_resume
from tenants.models import AuditRecord
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT, HIGH_RISK_TEXT
from tests.support import fast_passwords

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

# A queue that accepts messages and never delivers them: the drive must come from elsewhere.
LOST_MESSAGES = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    fast_passwords(settings)


def _config(contract: Contract) -> dict:
    return {"configurable": {"thread_id": contract.thread_id}}


def lost_submit(world, text: str) -> Contract:
    """A contract whose first drive never happened (its queue message was lost)."""
    return services.contract_submit(tenant=world.tenant, submitted_by=world.agent.user, title="MSA", text=text)


def stopped_after_analyze(world, settings, text: str) -> Contract:
    """A thread that stopped between two steps, as a worker killed after `analyze` leaves
    it: the analysis checkpointed, the review nodes still to run, no interrupt asked."""
    settings.TASKS = LOST_MESSAGES
    contract = lost_submit(world, text)
    contract_graph().invoke(services._initial_state(Contract.objects.select_related("tenant").get(pk=contract.pk)),
                            _config(contract), interrupt_before=["legal_review", "finance_review"])
    snapshot = thread_snapshot(contract.thread_id)
    assert snapshot.runnable and not snapshot.pending and snapshot.values["risk_score"] > 0.7
    return contract


def test_a_thread_stopped_between_steps_is_continued_from_its_checkpoint(acme, settings):
    contract = stopped_after_analyze(acme, settings, HIGH_RISK_LARGE_PAYMENT_TEXT)
    checkpoint = thread_snapshot(contract.thread_id).checkpoint_id

    services.contract_drive(tenant_id=acme.tenant.id, contract_id=contract.pk)

    contract.refresh_from_db()
    assert contract.status == "waiting_for_review"
    assert sorted(ReviewTask.objects.filter(contract=contract).values_list("kind", flat=True)) == ["finance", "legal"]
    assert (contract.run_lease_owner, contract.last_error, contract.run_attempts) == ("", "", 0)
    # Continued, not restarted: the analysis checkpoint is an ancestor of where it is now.
    history = [s.config["configurable"]["checkpoint_id"] for s in contract_graph().get_state_history(_config(contract))]
    assert checkpoint in history
    assert [s.metadata["source"] for s in contract_graph().get_state_history(_config(contract))].count("input") == 1


def test_a_decision_the_graph_consumed_before_a_crash_is_completed_and_applied_once(acme, settings):
    settings.TASKS = LOST_MESSAGES
    contract = lost_submit(acme, HIGH_RISK_TEXT)
    services.contract_drive(tenant_id=acme.tenant.id, contract_id=contract.pk)
    [task] = ReviewTask.objects.filter(contract=contract)
    review_task_resume(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user, data={"decision": "approve"})
    task.refresh_from_db()
    # A worker resumed the graph, `legal_review` consumed the answer, and the run died
    # before `finalize` (and before anything was recorded).
    contract_graph().invoke(Command(resume={task.interrupt_id: task.decision}), _config(contract),
                            interrupt_before=["finalize"])
    snapshot = thread_snapshot(contract.thread_id)
    assert snapshot.runnable and str(task.pk) in snapshot.applied_task_ids

    services.contract_drive(tenant_id=acme.tenant.id, contract_id=contract.pk)

    contract.refresh_from_db()
    task.refresh_from_db()
    assert contract.status == "approved" and contract.completed_at is not None
    assert task.applied_at is not None
    assert [h["task_id"] for h in thread_snapshot(contract.thread_id).values["history"]] == [str(task.pk)]
    assert QueueEvent.objects.filter(type="contract.completed", contract=contract).count() == 1


def test_a_decision_is_not_marked_applied_before_the_graph_moved_past_it(acme, settings, monkeypatch):
    settings.TASKS = LOST_MESSAGES
    contract = lost_submit(acme, HIGH_RISK_TEXT)
    services.contract_drive(tenant_id=acme.tenant.id, contract_id=contract.pk)
    [task] = ReviewTask.objects.filter(contract=contract)
    review_task_resume(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user, data={"decision": "approve"})

    def resume_that_dies(thread_id, answers):
        raise RuntimeError("worker lost mid-resume")

    monkeypatch.setattr(runner, "thread_resume", resume_that_dies)
    services.contract_drive(tenant_id=acme.tenant.id, contract_id=contract.pk)

    task.refresh_from_db()
    contract.refresh_from_db()
    assert task.applied_at is None  # sent, but never consumed
    assert contract.status == "waiting_for_review" and "worker lost mid-resume" in contract.last_error
    assert contract.run_attempts == 1 and contract.retry_at is not None


def test_a_drive_that_cannot_move_the_thread_stops_and_says_why(acme, settings, monkeypatch):
    contract = stopped_after_analyze(acme, settings, HIGH_RISK_TEXT)
    passes = []

    def continue_that_does_not_move(thread_id):
        passes.append(thread_id)
        return thread_snapshot(thread_id)

    monkeypatch.setattr(runner, "thread_continue", continue_that_does_not_move)

    services.contract_drive(tenant_id=acme.tenant.id, contract_id=contract.pk)  # returns: no loop

    assert len(passes) == 1
    contract.refresh_from_db()
    assert contract.last_error.startswith("DriveStuck: the thread does not move past legal_review")
    assert contract.run_attempts == 1 and contract.retry_at is not None
    assert contract.run_lease_owner == "" and contract.status == "running"


def _retry_due(contract: Contract) -> None:
    contract.refresh_from_db()
    services.contracts_recover(now=contract.retry_at + timedelta(seconds=1))


def test_a_failing_run_is_retried_with_backoff_then_failed_and_an_admin_retries_it(acme, settings, monkeypatch):
    settings.RUN_RETRY_ATTEMPTS = 4
    settings.RUN_RETRY_BASE_SECONDS, settings.RUN_RETRY_MAX_SECONDS = 2, 6

    def analyzer_down(text):
        raise RuntimeError("analyzer unavailable")

    monkeypatch.setattr(nodes, "analyze_text", analyzer_down)
    before = timezone.now()
    contract = lost_submit(acme, HIGH_RISK_TEXT)  # immediate backend: the first drive runs on commit
    contract.refresh_from_db()
    assert (contract.status, contract.run_attempts) == ("submitted", 1)
    assert contract.last_error == "RuntimeError: analyzer unavailable"
    # Backoff: base * 2^(attempt-1), capped, with up to 20% jitter below.
    delays = [contract.retry_at - contract.updated_at]
    for _ in range(2):
        _retry_due(contract)
        contract.refresh_from_db()
        delays.append(contract.retry_at - contract.updated_at)
    assert [round(d.total_seconds()) for d in delays] == pytest.approx([2, 4, 6], abs=1.3)
    assert contract.run_attempts == 3 and contract.retry_at > before

    _retry_due(contract)  # the fourth failure uses up the attempts
    contract.refresh_from_db()
    assert (contract.status, contract.run_attempts, contract.retry_at) == ("failed", 4, None)
    assert contract.run_state == "failed"
    [event] = QueueEvent.objects.filter(type="contract.failed", contract=contract)
    assert event.data["status"] == "failed"
    [record] = AuditRecord.objects.filter(action="contract.failed", target_id=str(contract.pk))
    assert record.data == {"attempts": 4, "error": "RuntimeError: analyzer unavailable"}
    assert services.contracts_recover(now=timezone.now() + timedelta(hours=1)) == []  # never retried on its own

    url = acme.url(f"contracts/{contract.pk}/retry/")
    assert acme.reviewer.client.post(url).status_code == 403
    monkeypatch.undo()  # the analyzer is back
    response = acme.admin.client.post(url)
    assert response.status_code == 202, response.content
    contract.refresh_from_db()
    assert (contract.status, contract.run_attempts, contract.last_error) == ("waiting_for_review", 0, "")
    assert AuditRecord.objects.filter(action="contract.retried", actor_username="acme-admin").count() == 1
    again = acme.admin.client.post(url)
    assert (again.status_code, again.json()["error"]["status"]) == (409, "waiting_for_review")


def test_retry_of_another_tenants_contract_is_a_404(acme, globex, settings, monkeypatch):
    settings.RUN_RETRY_ATTEMPTS = 1

    def analyzer_down(text):
        raise RuntimeError("analyzer unavailable")

    monkeypatch.setattr(nodes, "analyze_text", analyzer_down)
    contract = lost_submit(acme, HIGH_RISK_TEXT)
    contract.refresh_from_db()
    assert contract.status == "failed"
    response = globex.admin.client.post(acme.url(f"contracts/{contract.pk}/retry/"))
    assert response.status_code == 404
    assert globex.admin.client.post(globex.url(f"contracts/{contract.pk}/retry/")).status_code == 404


def test_database_errors_are_retried_without_using_up_attempts(acme, settings, monkeypatch):
    settings.RUN_RETRY_ATTEMPTS = 1

    def database_gone(thread_id, state):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(runner, "thread_start", database_gone)
    contract = lost_submit(acme, HIGH_RISK_TEXT)
    contract.refresh_from_db()
    assert (contract.status, contract.run_attempts) == ("submitted", 0)
    assert contract.retry_at is not None and "OperationalError" in contract.last_error
    monkeypatch.undo()
    _retry_due(contract)
    contract.refresh_from_db()
    assert (contract.status, contract.last_error) == ("waiting_for_review", "")


def test_reconcile_handles_a_stuck_contract_without_blocking_the_others(acme, settings, monkeypatch):
    stuck = stopped_after_analyze(acme, settings, HIGH_RISK_TEXT)
    lost = lost_submit(acme, HIGH_RISK_LARGE_PAYMENT_TEXT)
    real_continue = runner.thread_continue
    monkeypatch.setattr(
        runner, "thread_continue",
        lambda thread_id: thread_snapshot(thread_id) if thread_id == stuck.thread_id else real_continue(thread_id),
    )

    call_command("reconcile_reviews")

    stuck.refresh_from_db()
    lost.refresh_from_db()
    assert stuck.last_error.startswith("DriveStuck") and stuck.run_lease_owner == ""
    assert lost.status == "waiting_for_review"
    assert ReviewTask.objects.filter(contract=lost).count() == 2


def test_recovery_queues_each_contract_left_behind_once(acme, settings):
    settings.TASKS = LOST_MESSAGES
    now = timezone.now()
    crashed = lost_submit(acme, HIGH_RISK_TEXT)  # its worker died holding the lease
    Contract.objects.filter(pk=crashed.pk).update(run_lease_owner="dead", run_lease_until=now - timedelta(seconds=1))
    due = lost_submit(acme, HIGH_RISK_TEXT)
    Contract.objects.filter(pk=due.pk).update(retry_at=now - timedelta(seconds=1))
    fresh = lost_submit(acme, HIGH_RISK_TEXT)  # just submitted: its drive is still queued
    old = lost_submit(acme, HIGH_RISK_TEXT)  # long submitted and never driven: its message was lost
    Contract.objects.filter(pk=old.pk).update(updated_at=now - timedelta(minutes=5))
    done = lost_submit(acme, HIGH_RISK_TEXT)
    Contract.objects.filter(pk=done.pk).update(status="approved", updated_at=now - timedelta(minutes=5))
    failed = lost_submit(acme, HIGH_RISK_TEXT)
    Contract.objects.filter(pk=failed.pk).update(status="failed", updated_at=now - timedelta(minutes=5))

    queued = services.contracts_recover(now=now)

    assert sorted(map(str, queued)) == sorted(str(c.pk) for c in (crashed, due, old))
    assert fresh.pk not in queued
    # The due retry was claimed: the next round does not queue it again.
    assert due.pk not in services.contracts_recover(now=now)


def test_recovery_queues_no_second_drive_for_a_contract_whose_drive_still_waits(acme, settings):
    settings.TASKS = {"default": {"BACKEND": "contracts.queue_backend.QueueBackend"}}  # a queue nobody works
    now = timezone.now()
    waiting = lost_submit(acme, HIGH_RISK_TEXT)  # its drive is in the queue, the queue is behind
    lost = lost_submit(acme, HIGH_RISK_TEXT)
    DBTaskResult.objects.filter(args_kwargs__kwargs__contract_id=str(lost.pk)).delete()  # its message was lost
    Contract.objects.filter(pk__in=[waiting.pk, lost.pk]).update(updated_at=now - timedelta(minutes=5))

    assert services.contracts_recover(now=now) == [lost.pk]
    # Its new drive waits now too: the next rounds queue nothing until the queue moves.
    assert services.contracts_recover(now=now) == []
    assert DBTaskResult.objects.ready().count() == 2


def test_a_cancelled_contract_whose_thread_will_not_end_stays_cancelled(acme, settings):
    settings.TASKS = LOST_MESSAGES
    settings.RUN_RETRY_ATTEMPTS = 2
    contract = lost_submit(acme, HIGH_RISK_TEXT)
    Contract.objects.filter(pk=contract.pk).update(status="cancelled", run_attempts=1)
    contract = Contract.objects.select_related("tenant").get(pk=contract.pk)
    events_before = QueueEvent.objects.filter(tenant=acme.tenant).count()

    services.contract_retry_schedule(contract, reason="DriveStuck: the cancelled thread did not end", counts=True,
                                     now=timezone.now())

    assert (contract.status, contract.retry_at, contract.run_attempts) == ("cancelled", None, 2)
    assert contract.last_error.startswith("DriveStuck")
    assert QueueEvent.objects.filter(tenant=acme.tenant).count() == events_before  # no contract.failed
