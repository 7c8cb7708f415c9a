"""Cancelling a review task ends its contract's run in a defined state: every pending task
cancelled, the contract `cancelled`, and no interrupt left waiting in the LangGraph thread."""

from __future__ import annotations

import uuid

import pytest

from contracts.graph.runner import thread_snapshot
from contracts.models import Contract
from contracts.services import contract_submit
from reviews.models import QueueEvent, ReviewTask
from tenants.models import AuditRecord
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT, HIGH_RISK_TEXT

pytestmark = pytest.mark.django_db(transaction=True)


def two_task_contract(world) -> tuple[Contract, ReviewTask, ReviewTask]:
    contract = contract_submit(tenant=world.tenant, submitted_by=world.agent.user, title="MSA", text=HIGH_RISK_LARGE_PAYMENT_TEXT)
    contract.refresh_from_db()
    assert contract.status == "waiting_for_review"
    assert len(thread_snapshot(contract.thread_id).pending) == 2
    return contract, ReviewTask.objects.get(contract=contract, kind="legal"), ReviewTask.objects.get(contract=contract, kind="finance")


def post(member, world, task_id, action: str, body: dict | None = None):
    return member.client.post(world.url(f"reviews/{task_id}/{action}/"), body or {}, format="json")


def test_admin_cancel_ends_every_task_the_contract_and_the_thread(acme):
    contract, legal, finance = two_task_contract(acme)
    post(acme.reviewer2, acme, finance.pk, "claim")

    response = post(acme.admin, acme, legal.pk, "cancel")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"

    for task in (legal, finance):
        task.refresh_from_db()
        assert task.status == "cancelled"
        assert (task.claimed_by_id, task.claim_expires_at) == (None, None)
        assert task.decision is None
    contract.refresh_from_db()
    assert contract.status == "cancelled" and contract.run_state == "completed"
    assert contract.completed_at is not None
    # The worker ran on commit and ended the thread: nothing waits on an interrupt.
    snapshot = thread_snapshot(contract.thread_id)
    assert snapshot.pending == []
    assert snapshot.values["human_decision"] == "cancelled"
    assert contract.run_lease_owner == ""

    detail = acme.viewer.client.get(acme.url(f"contracts/{contract.pk}/")).json()
    assert (detail["status"], detail["run_state"], detail["pending_tasks"]) == ("cancelled", "completed", [])
    queue = acme.viewer.client.get(acme.url("reviews/"), {"status": "pending"}).json()["results"]
    assert queue == []
    [record] = AuditRecord.objects.filter(action="contract.cancelled")
    assert (record.actor_username, record.target_id, record.data["task"]) == ("acme-admin", str(contract.pk), str(legal.pk))
    assert sorted(record.data["cancelled_tasks"]) == sorted([str(legal.pk), str(finance.pk)])
    # Each task's own history shows its cancel too.
    per_task = AuditRecord.objects.filter(action="review.cancelled").values_list("target_id", flat=True)
    assert sorted(per_task) == sorted([str(legal.pk), str(finance.pk)])
    assert QueueEvent.objects.filter(type="review.cancelled").count() == 2
    assert QueueEvent.objects.filter(type="contract.completed", contract=contract).count() == 1


def test_after_cancel_resume_claim_and_cancel_are_409(acme):
    contract, legal, finance = two_task_contract(acme)
    assert post(acme.admin, acme, finance.pk, "cancel").status_code == 200

    for member, task in ((acme.reviewer, legal), (acme.reviewer2, finance), (acme.admin, legal)):
        refused = post(member, acme, task.pk, "resume", {"decision": "approve"})
        assert refused.status_code == 409
        assert (refused.json()["error"]["code"], refused.json()["error"]["status"]) == ("conflict", "cancelled")
    assert post(acme.reviewer, acme, legal.pk, "claim").status_code == 409
    again = post(acme.admin, acme, legal.pk, "cancel")
    assert (again.status_code, again.json()["error"]["status"]) == (409, "cancelled")
    batch = acme.admin.client.post(acme.url("reviews/batch-resume/"), {"items": [{"id": str(legal.pk), "decision": "approve"}]}, format="json")
    assert batch.json()["results"][0]["outcome"] == "conflict"

    contract.refresh_from_db()
    assert contract.status == "cancelled" and contract.decision_history == []
    assert thread_snapshot(contract.thread_id).pending == []
    assert not ReviewTask.objects.filter(contract=contract, status="resolved").exists()


def test_cancel_after_one_of_two_decisions_cancels_the_rest(acme):
    contract, legal, finance = two_task_contract(acme)
    assert post(acme.reviewer, acme, legal.pk, "resume", {"decision": "approve"}).status_code == 202
    # The decided task cannot be cancelled; the contract still waits on finance.
    refused = post(acme.admin, acme, legal.pk, "cancel")
    assert (refused.status_code, refused.json()["error"]["status"]) == (409, "resolved")

    assert post(acme.admin, acme, finance.pk, "cancel").status_code == 200
    legal.refresh_from_db()
    finance.refresh_from_db()
    assert (legal.status, finance.status) == ("resolved", "cancelled")
    contract.refresh_from_db()
    assert contract.status == "cancelled"
    assert thread_snapshot(contract.thread_id).pending == []


def test_a_finished_contract_cannot_be_cancelled(acme):
    contract = contract_submit(tenant=acme.tenant, submitted_by=acme.agent.user, title="MSA", text=HIGH_RISK_TEXT)
    task = ReviewTask.objects.get(contract=contract)
    assert post(acme.reviewer, acme, task.pk, "resume", {"decision": "reject"}).status_code == 202
    refused = post(acme.admin, acme, task.pk, "cancel")
    assert (refused.status_code, refused.json()["error"]["status"]) == (409, "rejected")
    contract.refresh_from_db()
    assert contract.status == "rejected"


def test_only_tenant_admins_may_cancel(acme, globex):
    contract, legal, finance = two_task_contract(acme)
    for member in (acme.reviewer, acme.reviewer2, acme.senior, acme.viewer, acme.agent):
        refused = post(member, acme, legal.pk, "cancel")
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden"), member.user.username
    missing = post(globex.admin, globex, uuid.uuid4(), "cancel")
    foreign = post(globex.admin, globex, legal.pk, "cancel")
    assert (foreign.status_code, foreign.json()) == (404, missing.json())
    assert post(globex.admin, acme, legal.pk, "cancel").status_code == 404

    contract.refresh_from_db()
    assert contract.status == "waiting_for_review"
    assert ReviewTask.objects.filter(contract=contract, status="pending").count() == 2
    assert len(thread_snapshot(contract.thread_id).pending) == 2


def test_a_cancel_during_a_run_still_ends_the_thread(acme, monkeypatch):
    # The legal decision's run is in flight when an admin cancels: the cancel's own drive
    # finds the run lease held and returns, so the lease holder must end the thread
    # (finance would otherwise be left waiting in LangGraph) before it lets go.
    from contracts.graph import runner

    contract, legal, finance = two_task_contract(acme)
    real_resume = runner.thread_resume
    cancelled = []

    def resume_then_cancel(thread_id: str, answers: dict):
        snapshot = real_resume(thread_id, answers)
        if not cancelled:
            cancelled.append(post(acme.admin, acme, finance.pk, "cancel"))
        return snapshot

    monkeypatch.setattr(runner, "thread_resume", resume_then_cancel)
    response = post(acme.reviewer, acme, legal.pk, "resume", {"decision": "approve"})
    assert response.status_code == 202, response.content
    assert cancelled[0].status_code == 200, cancelled[0].content

    contract.refresh_from_db()
    assert contract.status == "cancelled" and contract.run_lease_owner == ""
    snapshot = thread_snapshot(contract.thread_id)
    assert snapshot.pending == []
    assert snapshot.values["human_decision"] == "cancelled"
    legal.refresh_from_db()
    finance.refresh_from_db()
    assert (legal.status, finance.status) == ("resolved", "cancelled")
    assert legal.applied_at is not None
