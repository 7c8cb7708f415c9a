"""End to end through the API with the immediate task backend: submit -> interrupt ->
review task -> resume -> final status, on real PostgreSQL (and SQLite where marked)."""

from __future__ import annotations

import pytest

from contracts.graph.runner import thread_snapshot
from contracts.models import Contract
from reviews.models import ReviewTask
from tests.factories import (
    CRITICAL_RISK_TEXT,
    HIGH_RISK_LARGE_PAYMENT_TEXT,
    HIGH_RISK_TEXT,
    LOW_RISK_TEXT,
)

pytestmark = pytest.mark.django_db(transaction=True)


def submit(world, text: str, title: str = "MSA") -> dict:
    response = world.agent.client.post(world.url("contracts/"), {"title": title, "text": text}, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def pending_tasks(world, contract_id: str) -> list[dict]:
    response = world.reviewer.client.get(world.url("reviews/?status=pending"))
    assert response.status_code == 200
    return [t for t in response.json()["results"] if t["contract"] == contract_id]


def resume(member, world, task_id: str, body: dict):
    return member.client.post(world.url(f"reviews/{task_id}/resume/"), body, format="json")


def contract(world, contract_id: str) -> dict:
    response = world.viewer.client.get(world.url(f"contracts/{contract_id}/"))
    assert response.status_code == 200
    return response.json()


@pytest.mark.embedded
def test_high_risk_contract_waits_for_legal_review_then_approves(acme):
    created = submit(acme, HIGH_RISK_TEXT)
    assert created["thread_id"] == f"{acme.tenant.id}:contract:{created['id']}"

    [task] = pending_tasks(acme, created["id"])
    assert task["kind"] == "legal"
    payload = task["payload"]
    assert payload["contract_preview"] == HIGH_RISK_TEXT[:200]
    assert payload["risk_score"] == pytest.approx(0.8245)
    assert {f["rule"] for f in payload["findings"]} == {
        "uncapped_liability",
        "broad_indemnification",
        "unilateral_termination",
    }
    assert payload["recommendation"] == "HIGH RISK - Legal review required"
    assert payload["options"] == ["approve", "reject", "amend"]
    assert task["response_schema"]["properties"]["decision"]["enum"] == ["approve", "reject", "amend"]
    assert contract(acme, created["id"])["status"] == "waiting_for_review"

    response = resume(acme.reviewer, acme, task["id"], {"decision": "approve", "comment": "fine"})
    assert response.status_code == 202, response.content

    final = contract(acme, created["id"])
    assert final["status"] == "approved"
    assert final["run_state"] == "completed"
    assert [(h["kind"], h["decision"], h["decided_by_username"]) for h in final["decision_history"]] == [
        ("legal", "approve", "acme-reviewer")
    ]
    snapshot = thread_snapshot(created["thread_id"])
    assert snapshot.finished and snapshot.values["human_decision"] == "approved"


@pytest.mark.embedded
def test_low_risk_contract_is_auto_approved_without_a_task(acme):
    created = submit(acme, LOW_RISK_TEXT)
    assert created["status"] == "auto_approved"
    assert ReviewTask.objects.filter(contract_id=created["id"]).count() == 0
    assert contract(acme, created["id"])["decision_history"] == []


def test_amend_stores_amendments_and_amended_text(acme):
    created = submit(acme, HIGH_RISK_TEXT)
    [task] = pending_tasks(acme, created["id"])
    amendments = ["Liability capped at fees paid in the prior 12 months.", "Termination needs 90 days notice."]
    assert resume(acme.reviewer, acme, task["id"], {"decision": "amend", "amendments": amendments}).status_code == 202

    final = contract(acme, created["id"])
    assert final["status"] == "amended"
    assert final["amendments"] == amendments
    assert final["amended_text"].startswith(HIGH_RISK_TEXT)
    assert "1. Liability capped" in final["amended_text"] and "2. Termination needs" in final["amended_text"]


@pytest.mark.parametrize("order", [("legal", "finance"), ("finance", "legal")])
def test_parallel_legal_and_finance_reviews_complete_only_after_both(acme, order):
    created = submit(acme, HIGH_RISK_LARGE_PAYMENT_TEXT)
    tasks = {t["kind"]: t for t in pending_tasks(acme, created["id"])}
    assert set(tasks) == {"legal", "finance"}
    assert tasks["legal"]["interrupt_id"] != tasks["finance"]["interrupt_id"]
    assert tasks["finance"]["payload"]["max_payment"] == 500000.0

    first, second = order
    decider = {"legal": acme.reviewer, "finance": acme.reviewer2}
    assert resume(decider[first], acme, tasks[first]["id"], {"decision": "approve"}).status_code == 202
    midway = contract(acme, created["id"])
    assert midway["status"] == "waiting_for_review"
    assert [t["kind"] for t in midway["pending_tasks"]] == [second]

    assert resume(decider[second], acme, tasks[second]["id"], {"decision": "approve"}).status_code == 202
    final = contract(acme, created["id"])
    assert final["status"] == "approved"
    assert sorted(h["kind"] for h in final["decision_history"]) == ["finance", "legal"]


def test_finance_rejection_rejects_the_contract(acme):
    created = submit(acme, HIGH_RISK_LARGE_PAYMENT_TEXT)
    tasks = {t["kind"]: t for t in pending_tasks(acme, created["id"])}
    resume(acme.reviewer, acme, tasks["legal"]["id"], {"decision": "approve"})
    resume(acme.reviewer2, acme, tasks["finance"]["id"], {"decision": "reject"})
    assert contract(acme, created["id"])["status"] == "rejected"


def test_four_eyes_same_user_cannot_sign_twice_a_second_user_can(acme):
    created = submit(acme, CRITICAL_RISK_TEXT)
    [legal] = pending_tasks(acme, created["id"])
    assert legal["payload"]["risk_score"] >= 0.9
    assert resume(acme.senior, acme, legal["id"], {"decision": "approve"}).status_code == 202

    [signoff] = pending_tasks(acme, created["id"])
    assert signoff["kind"] == "signoff"
    assert signoff["payload"]["first_signer"]["username"] == "acme-senior"

    refused = resume(acme.senior, acme, signoff["id"], {"decision": "approve"})
    assert refused.status_code == 403
    assert refused.json()["error"]["reason"] == "four_eyes"
    assert ReviewTask.objects.get(pk=signoff["id"]).status == "pending"

    assert resume(acme.admin, acme, signoff["id"], {"decision": "approve"}).status_code == 202
    final = contract(acme, created["id"])
    assert final["status"] == "approved"
    assert [(h["kind"], h["decided_by_username"]) for h in final["decision_history"]] == [
        ("legal", "acme-senior"),
        ("signoff", "acme-admin"),
    ]


def test_second_resume_of_a_resolved_task_is_a_conflict_and_changes_nothing(acme):
    created = submit(acme, HIGH_RISK_TEXT)
    [task] = pending_tasks(acme, created["id"])
    assert resume(acme.reviewer, acme, task["id"], {"decision": "reject"}).status_code == 202
    again = resume(acme.reviewer2, acme, task["id"], {"decision": "approve"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    assert contract(acme, created["id"])["status"] == "rejected"
    assert ReviewTask.objects.get(pk=task["id"]).decision["decision"] == "reject"


def test_other_tenant_sees_404_for_contract_and_task(acme, globex):
    created = submit(acme, HIGH_RISK_TEXT)
    [task] = pending_tasks(acme, created["id"])
    assert globex.admin.client.get(acme.url(f"contracts/{created['id']}/")).status_code == 404
    assert globex.admin.client.get(globex.url(f"contracts/{created['id']}/")).status_code == 404
    response = resume(globex.reviewer, globex, task["id"], {"decision": "approve"})
    assert response.status_code == 404
    assert globex.reviewer.client.get(globex.url("reviews/")).json()["results"] == []
    assert Contract.objects.get(pk=created["id"]).status == "waiting_for_review"
