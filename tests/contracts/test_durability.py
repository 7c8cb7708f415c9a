"""A thread outlives the process that started it: one OS process submits a contract and
exits at the interrupt; a fresh OS process records the decision and resumes the graph
from the checkpoint alone. Both children use the test database of this test."""

from __future__ import annotations

import os

import pytest

from contracts.graph.runner import thread_snapshot
from contracts.models import Contract
from reviews.models import ReviewTask
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT, HIGH_RISK_TEXT
from tests.support import checkpoint_trail, fast_passwords, postgresql_only, run_django_script

pytestmark = [pytest.mark.django_db(transaction=True), postgresql_only]


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    fast_passwords(settings)


SUBMIT = """
from django.contrib.auth import get_user_model
from contracts.services import contract_submit
from tenants.models import Tenant
tenant = Tenant.objects.get(pk=sys.argv[1])
user = get_user_model().objects.get(pk=int(sys.argv[2]))
contract = contract_submit(tenant=tenant, submitted_by=user, title="MSA", text=sys.argv[3])
print(json.dumps({"contract_id": str(contract.id), "pid": os.getpid()}))
"""

RESUME = """
from django.contrib.auth import get_user_model
from reviews.services import review_task_resume
from tenants.models import Tenant
tenant = Tenant.objects.get(pk=sys.argv[1])
user = get_user_model().objects.get(pk=int(sys.argv[2]))
task = review_task_resume(tenant=tenant, task_id=sys.argv[3], user=user, data=json.loads(sys.argv[4]))
print(json.dumps({"status": task.status, "pid": os.getpid()}))
"""


def submit_in_child(world, text: str) -> tuple[Contract, int]:
    out = run_django_script(SUBMIT, str(world.tenant.id), str(world.agent.user.pk), text)
    return Contract.objects.get(pk=out["contract_id"]), out["pid"]


def resume_in_child(world, member, task: ReviewTask, body: str) -> dict:
    return run_django_script(RESUME, str(world.tenant.id), str(member.user.pk), str(task.pk), body)


def test_interrupt_in_one_process_resume_in_a_fresh_one(acme):
    contract, submit_pid = submit_in_child(acme, HIGH_RISK_TEXT)

    # Process 1 has exited; the interrupt is only in the checkpoint and the task row.
    assert contract.status == "waiting_for_review"
    [task] = ReviewTask.objects.filter(contract=contract)
    snapshot = thread_snapshot(contract.thread_id)
    assert [(p.id, p.kind) for p in snapshot.pending] == [(task.interrupt_id, "legal")]
    assert not snapshot.finished
    trail_at_interrupt = checkpoint_trail(contract.thread_id)

    out = resume_in_child(acme, acme.reviewer, task, '{"decision": "approve", "comment": "from a fresh process"}')
    assert out["status"] == "resolved"
    assert len({os.getpid(), submit_pid, out["pid"]}) == 3

    contract.refresh_from_db()
    assert contract.status == "approved"
    assert [(h["kind"], h["decision"], h["comment"]) for h in contract.decision_history] == [
        ("legal", "approve", "from a fresh process")
    ]
    task.refresh_from_db()
    assert task.applied_at is not None
    snapshot = thread_snapshot(contract.thread_id)
    assert snapshot.finished and snapshot.values["human_decision"] == "approved"
    # The run continued the same checkpoint chain; it did not start over.
    assert checkpoint_trail(contract.thread_id)[: len(trail_at_interrupt)] == trail_at_interrupt


def test_parallel_reviews_answered_from_two_different_processes(acme):
    contract, _ = submit_in_child(acme, HIGH_RISK_LARGE_PAYMENT_TEXT)
    tasks = {t.kind: t for t in ReviewTask.objects.filter(contract=contract)}
    assert set(tasks) == {"legal", "finance"}

    # reviewer2 is the finance approver; legal goes to the reviewers' team.
    resume_in_child(acme, acme.reviewer2, tasks["finance"], '{"decision": "approve"}')
    contract.refresh_from_db()
    assert contract.status == "waiting_for_review"
    assert [p.kind for p in thread_snapshot(contract.thread_id).pending] == ["legal"]

    resume_in_child(acme, acme.reviewer, tasks["legal"], '{"decision": "approve"}')
    contract.refresh_from_db()
    assert contract.status == "approved"
    assert sorted(h["kind"] for h in contract.decision_history) == ["finance", "legal"]
    assert thread_snapshot(contract.thread_id).finished


def _checkpoints_seen_elsewhere(thread_id: str) -> int:
    """Checkpoint rows of the thread, as another session sees them (committed only)."""
    from contracts.graph.runner import postgres_connect

    with postgres_connect() as other:
        return other.execute("SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", [thread_id]).fetchone()["n"]


def _contract_without_run(world, title: str) -> Contract:
    import uuid

    contract_id = uuid.uuid4()
    return Contract.objects.create(id=contract_id, tenant=world.tenant, title=title, text=HIGH_RISK_TEXT,
                                   status="submitted", thread_id=Contract.thread_id_for(world.tenant.id, contract_id))


def test_a_pass_commits_its_checkpoint_and_writes_as_one(acme):
    from contracts.graph import runner
    from contracts.services import _initial_state

    contract = _contract_without_run(acme, "MSA")
    with runner.thread_pass():
        after = runner.thread_start(contract.thread_id, _initial_state(contract))
        # Read back inside the pass: the interrupt is there, but no other session sees it yet.
        assert [item.kind for item in after.pending] == ["legal"]
        assert _checkpoints_seen_elsewhere(contract.thread_id) == 0
    assert _checkpoints_seen_elsewhere(contract.thread_id) == 1
    assert [item.kind for item in thread_snapshot(contract.thread_id).pending] == ["legal"]

    # A pass that fails leaves the thread as it found it: no checkpoint, no writes.
    second = _contract_without_run(acme, "MSA 2")
    with pytest.raises(RuntimeError), runner.thread_pass():
        runner.thread_start(second.thread_id, _initial_state(second))
        raise RuntimeError("the pass failed after its run")
    assert _checkpoints_seen_elsewhere(second.thread_id) == 0
    assert not thread_snapshot(second.thread_id).exists
