"""Batch resume: every item gets its own outcome, in order, and only valid items have an
effect, each exactly once."""

from __future__ import annotations

import random
import uuid
from collections import Counter

import pytest

from contracts.models import Contract
from contracts.services import contract_submit
from reviews.models import ReviewTask
from reviews.services import review_task_resume
from tenants.models import AuditRecord
from tests.factories import HIGH_RISK_TEXT, LARGE_PAYMENT_TEXT

pytestmark = pytest.mark.django_db(transaction=True)

BATCH_LIMIT = 100


def task_of(world, text: str, kind: str) -> ReviewTask:
    contract = contract_submit(tenant=world.tenant, submitted_by=world.agent.user, title="Contract", text=text)
    return ReviewTask.objects.get(contract=contract, kind=kind)


def batch(member, world, items):
    return member.client.post(world.url("reviews/batch-resume/"), {"items": items}, format="json")


def resolved_records(task_id) -> int:
    return AuditRecord.objects.filter(target_type="reviewtask", target_id=str(task_id), action="review.resolved").count()


DECISIONS = [
    {"decision": "approve"},
    {"decision": "reject", "comment": "too risky"},
    {"decision": "amend", "amendments": ["Cap liability at fees paid."]},
]
CONTRACT_STATUS = {"approve": "approved", "reject": "rejected", "amend": "amended"}


def test_a_mixed_batch_of_a_hundred_gets_one_outcome_per_item_in_order(acme, globex):
    valid = [task_of(acme, HIGH_RISK_TEXT, "legal") for _ in range(20)]
    finance = [task_of(acme, LARGE_PAYMENT_TEXT, "finance") for _ in range(4)]
    decided = [task_of(acme, HIGH_RISK_TEXT, "legal") for _ in range(4)]
    for task in decided:
        review_task_resume(tenant=acme.tenant, task_id=task.pk, user=acme.senior.user, data={"decision": "reject"})
    spare = task_of(acme, HIGH_RISK_TEXT, "legal")  # only ever sent with a malformed decision
    foreign = [task_of(globex, HIGH_RISK_TEXT, "legal") for _ in range(6)]

    # (item, expected outcome, expected id in the outcome); a valid task sent twice is
    # resolved the first time and a conflict the second.
    cases: list[tuple[object, str, str | None]] = []
    for i, task in enumerate(valid):
        cases.append(({"id": str(task.pk), **DECISIONS[i % 3]}, "valid", str(task.pk)))
    for task in valid[:6]:
        cases.append(({"id": str(task.pk), "decision": "approve"}, "valid", str(task.pk)))
    for task in finance:  # acme-reviewer is not a finance approver
        cases.append(({"id": str(task.pk), "decision": "approve"}, "forbidden", str(task.pk)))
    for task in decided:
        cases.append(({"id": str(task.pk), "decision": "approve"}, "conflict", str(task.pk)))
    for task in foreign:  # another tenant's task: exactly like a missing one
        cases.append(({"id": str(task.pk), "decision": "approve"}, "not_found", str(task.pk)))
    for _ in range(18):
        missing = str(uuid.uuid4())
        cases.append(({"id": missing, "decision": "approve"}, "not_found", missing))
    for item in [1, "approve", None, [], [{"id": str(spare.pk)}], True, 2.5, "", {}, 0, [1, 2], "x" * 50, False, -1, [[]]]:
        expected_id = "None" if item == {} else None  # {} is an object without an id
        cases.append((item, "invalid", expected_id))
    for bad_id in ["nope", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", None, "", "1234", str(uuid.uuid4())[:-1], {"id": "x"}, ["a"], 1.5,
                   "g" * 32, "spare", " "]:
        cases.append(({"id": bad_id, "decision": "approve"}, "invalid", str(bad_id)))
    spare_id = str(spare.pk)
    for bad in [
        {"decision": "maybe"},
        {"decision": "amend"},  # amend without amendments
        {"decision": "approve", "amendments": ["x"]},  # amendments only go with amend
        {},  # no decision
        {"decision": "approve", "status": "resolved"},  # not a client field
        {"decision": "approve", "decided_by": 1},
        {"decision": "approve", "comment": "c" * 5001},
        {"decision": None},
        {"decision": ["approve"]},
        {"decision": "APPROVE"},
        {"decision": "amend", "amendments": [""]},
        {"decision": "amend", "amendments": "not a list"},
        {"decision": "approve", "tenant": "globex"},
        {"decision": 1},
        {"decision": "reject", "comment": 5},
    ]:
        cases.append(({"id": spare_id, **bad}, "invalid", spare_id))
    assert len(cases) == BATCH_LIMIT

    # Shuffled, except that no valid item's repeat may come before its first use.
    random.Random(20240601).shuffle(cases)
    applied: dict[str, str] = {}  # task id -> the decision of its first valid item
    expected: list[tuple[str, str | None]] = []
    for item, outcome, expected_id in cases:
        if outcome == "valid":
            outcome = "conflict" if expected_id in applied else "resolved"
            applied.setdefault(expected_id, item["decision"])
        expected.append((outcome, expected_id))

    response = batch(acme.reviewer, acme, [item for item, _, _ in cases])
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [(r["outcome"], r["id"]) for r in results] == expected
    assert Counter(outcome for outcome, _ in expected) == {
        "resolved": 20, "conflict": 10, "forbidden": 4, "not_found": 24, "invalid": 42,
    }

    for (item, _, _), result in zip(cases, results):
        if result["outcome"] == "resolved":
            receipt = result["receipt"]
            assert receipt["id"] == item["id"] and receipt["status"] == "resolved"
            assert receipt["decision"]["decision"] == item["decision"]
        elif result["outcome"] == "invalid":
            assert result["fields"] and result["message"]
        elif result["outcome"] in ("forbidden", "conflict"):
            assert result["message"]
    # The malformed decisions name their field.
    spare_fields = [r["fields"] for r in results if r["id"] == spare_id]
    assert any("decision" in f for f in spare_fields)
    assert any("amendments" in f for f in spare_fields)
    assert any("status" in f for f in spare_fields) and any("comment" in f for f in spare_fields)

    # Each valid item was applied exactly once: decision recorded, graph advanced.
    for task in valid:
        task.refresh_from_db()
        decision = applied[str(task.pk)]
        assert (task.status, task.decision["decision"], task.decided_by_id) == ("resolved", decision, acme.reviewer.user.pk)
        assert task.applied_at is not None
        assert resolved_records(task.pk) == 1
        contract = Contract.objects.get(pk=task.contract_id)
        assert contract.status == CONTRACT_STATUS[decision]
        assert [h["decision"] for h in contract.decision_history] == [decision]
    # Nothing else moved.
    for task in finance + foreign + [spare]:
        task.refresh_from_db()
        assert task.status == "pending" and task.decision is None
        assert resolved_records(task.pk) == 0
    for task in decided:
        task.refresh_from_db()
        assert task.decision["decision"] == "reject" and resolved_records(task.pk) == 1

    # The same batch again: everything that was resolved is now a conflict, no new effect.
    again = batch(acme.reviewer, acme, [item for item, _, _ in cases]).json()["results"]
    assert [r["outcome"] for r in again] == ["conflict" if o == "resolved" else o for o, _ in expected]
    assert sum(resolved_records(task.pk) for task in valid) == len(valid)


def test_a_null_item_is_an_invalid_outcome_not_a_400_for_the_batch(acme):
    """Regression: items were JSONField(allow_null=False), so one null made the whole
    batch a 400 ("items.N: This field may not be null.")."""
    task = task_of(acme, HIGH_RISK_TEXT, "legal")
    response = batch(acme.reviewer, acme, [{"id": str(task.pk), "decision": "approve"}, None])
    assert response.status_code == 200, response.content
    assert [(r["id"], r["outcome"]) for r in response.json()["results"]] == [(str(task.pk), "resolved"), (None, "invalid")]


def test_finance_items_are_resolved_for_a_finance_approver(acme):
    finance = task_of(acme, LARGE_PAYMENT_TEXT, "finance")
    legal = task_of(acme, HIGH_RISK_TEXT, "legal")
    items = [{"id": str(finance.pk), "decision": "approve"}, {"id": str(legal.pk), "decision": "amend", "amendments": ["x"]}]
    results = batch(acme.reviewer2, acme, items).json()["results"]
    assert [r["outcome"] for r in results] == ["resolved", "resolved"]
    assert Contract.objects.get(pk=finance.contract_id).status == "approved"
    assert Contract.objects.get(pk=legal.contract_id).status == "amended"


def test_an_item_claimed_by_someone_else_is_a_conflict(acme):
    task = task_of(acme, HIGH_RISK_TEXT, "legal")
    assert acme.senior.client.post(acme.url(f"reviews/{task.pk}/claim/")).status_code == 200
    [result] = batch(acme.reviewer, acme, [{"id": str(task.pk), "decision": "approve"}]).json()["results"]
    assert result["outcome"] == "conflict" and "acme-senior" in result["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": [{"id": str(uuid.UUID(int=i)), "decision": "approve"} for i in range(BATCH_LIMIT + 1)]}, "items"),
        ({"items": []}, "items"),
        ({}, "items"),
        ({"items": "all of them"}, "items"),
        ({"items": None}, "items"),
        ({"items": [], "dry_run": True}, "dry_run"),
    ],
)
def test_a_batch_over_100_items_or_empty_is_400_naming_items(acme, body, field):
    task = task_of(acme, HIGH_RISK_TEXT, "legal")
    if isinstance(body.get("items"), list) and body["items"]:
        body["items"][0]["id"] = str(task.pk)  # a real task: nothing of it may be applied
    response = acme.reviewer.client.post(acme.url("reviews/batch-resume/"), body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"], error
    task.refresh_from_db()
    assert task.status == "pending"


def test_a_body_that_is_not_an_object_is_400(acme):
    response = acme.reviewer.client.post(acme.url("reviews/batch-resume/"), [{"id": str(uuid.uuid4())}], format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_exactly_100_items_is_allowed(acme):
    items = [{"id": str(uuid.uuid4()), "decision": "approve"} for _ in range(BATCH_LIMIT)]
    response = batch(acme.reviewer, acme, items)
    assert response.status_code == 200
    assert {r["outcome"] for r in response.json()["results"]} == {"not_found"}


def test_batch_needs_a_deciding_role_and_membership(acme, globex, anon):
    task = task_of(acme, HIGH_RISK_TEXT, "legal")
    items = [{"id": str(task.pk), "decision": "approve"}]
    for member in (acme.viewer, acme.agent):
        response = batch(member, acme, items)
        assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
    assert batch(globex.admin, acme, items).status_code == 404
    # Through its own tenant, globex only ever sees "not found".
    assert batch(globex.admin, globex, items).json()["results"] == [{"id": str(task.pk), "outcome": "not_found"}]
    assert anon.post(acme.url("reviews/batch-resume/"), {"items": items}, format="json").status_code == 401
    task.refresh_from_db()
    assert task.status == "pending"


def test_critical_risk_and_sign_off_tasks_are_never_decided_in_a_batch(acme):
    """The bulk rule of the admin's confirmation page holds for the API's batch too."""
    from tests.factories import CRITICAL_RISK_TEXT

    critical = task_of(acme, CRITICAL_RISK_TEXT, "legal")
    review_task_resume(tenant=acme.tenant, task_id=critical.pk, user=acme.senior.user, data={"decision": "approve"})
    signoff = ReviewTask.objects.get(contract=critical.contract, kind="signoff")
    other_critical = task_of(acme, CRITICAL_RISK_TEXT, "legal")
    plain = task_of(acme, HIGH_RISK_TEXT, "legal")

    response = batch(acme.admin, acme, [{"id": str(t.pk), "decision": "approve"} for t in (signoff, other_critical, plain)])

    assert response.status_code == 200, response.content
    outcomes = response.json()["results"]
    assert [o["outcome"] for o in outcomes] == ["forbidden", "forbidden", "resolved"]
    assert "sign-off is never decided in bulk" in outcomes[0]["message"]
    assert "critical risk is never decided in bulk" in outcomes[1]["message"]
    for task in (signoff, other_critical):
        task.refresh_from_db()
        assert task.status == "pending" and resolved_records(task.pk) == 0
    # Each on its own is fine.
    one = acme.admin.client.post(acme.url(f"reviews/{other_critical.pk}/resume/"), {"decision": "approve"}, format="json")
    assert one.status_code == 202, one.content
