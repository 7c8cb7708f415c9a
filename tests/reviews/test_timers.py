"""The queue's clock (reviews.timers), with the clock injected through `now=`: reminders,
escalations and expiries fire once each at their time, even with two schedulers racing;
escalation changes who may decide (API and admin); expiry rejects with its reason and
the contract ends `rejected`; an expiry racing a reviewer's decision leaves exactly one
outcome and one resume of the graph."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta

import pytest
from django.test import Client, TestCase
from django.utils import timezone

from config.api_errors import Conflict
from contracts.graph import runner
from contracts.models import Contract
from contracts.services import _initial_state  # the graph's input for a contract, as the drive builds it
from reviews.models import QueueEvent, ReviewTask, ReviewTaskGroupPermission
from reviews.selectors import review_task_can_resume
from reviews.services import review_policies_set, review_task_claim, review_task_resume, review_tasks_sync
from reviews.timers import review_escalations_run, review_expiries_run, review_reminders_send
from tenants.models import AuditRecord, Membership
from tests.api_flow import pending, submit
from tests.factories import HIGH_RISK_TEXT, LARGE_PAYMENT_TEXT, LEGAL_REVIEW_TEXT
from tests.support import graph_runs_spy, postgresql_only, race

POLICY = {
    "due_after_seconds": 3600,
    "remind_before_due_seconds": 600,  # at 3000 s
    "escalate_after_seconds": 1800,
    "escalation_team": "senior",
    "escalation_keeps_grants": False,
    "expire_after_seconds": 7200,
    "expiry_action": "reject",
    "expiry_reason": "No legal decision within two hours: rejected by policy.",
}


def set_policy(world, kind: str = "legal", **changes) -> None:
    review_policies_set(tenant=world.tenant, changes={kind: {**POLICY, **changes}}, actor=world.admin.user, via="api")


def tasks_at(world, now: datetime, count: int = 1, kind: str = "legal") -> list[ReviewTask]:
    """`count` pending tasks created at `now`, each the interrupt of a thread the graph
    really ran (a reviewer's resume checks the thread's live interrupt), made by the
    drive's own sync with the clock at `now`."""
    made = []
    for _ in range(count):
        contract_id = uuid.uuid4()
        contract = Contract.objects.create(id=contract_id, tenant=world.tenant, title="MSA",
                                           text=LARGE_PAYMENT_TEXT if kind == "finance" else LEGAL_REVIEW_TEXT,
                                           thread_id=Contract.thread_id_for(world.tenant.id, contract_id),
                                           status="waiting_for_review")
        snapshot = runner.thread_start(contract.thread_id, _initial_state(contract))
        made += review_tasks_sync(contract=contract, pending=[p for p in snapshot.pending if p.kind == kind], now=now)
    return made


def events_of(type_: str, task: ReviewTask | None = None) -> list[QueueEvent]:
    events = QueueEvent.objects.filter(type=type_)
    return list(events.filter(task=task) if task is not None else events)


def audit(task: ReviewTask, action: str) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(target_type="reviewtask", target_id=str(task.pk), action=action))


def may_decide(world, member, task: ReviewTask) -> bool:
    membership = Membership.objects.select_related("tenant").get(tenant=world.tenant, user=member.user)
    return review_task_can_resume(task=task, user=member.user, membership=membership)


# --- Reminders ------------------------------------------------------------------------------


@pytest.mark.embedded
@pytest.mark.django_db
def test_a_reminder_is_sent_once_when_its_time_comes(acme):
    set_policy(acme)
    t0 = timezone.now()
    [task] = tasks_at(acme, t0)
    assert review_reminders_send(now=t0 + timedelta(seconds=2999)) == 0
    assert review_reminders_send(now=t0 + timedelta(seconds=3000)) == 1
    assert review_reminders_send(now=t0 + timedelta(seconds=3300)) == 0

    task.refresh_from_db()
    assert task.reminded_at == t0 + timedelta(seconds=3000)
    assert task.priority == 40 + 20  # half of 0.8, raised when due soon
    [event] = events_of("review.due_soon", task)
    assert event.data["due_at"] == task.due_at.isoformat() and event.data["priority"] == 60
    [record] = audit(task, "review.due_soon")
    assert record.actor is None and record.interface == "system"


@pytest.mark.django_db
def test_a_decided_task_is_never_reminded_escalated_or_expired(acme):
    set_policy(acme)
    t0 = timezone.now() - timedelta(hours=3)
    [task] = tasks_at(acme, t0)
    review_task_resume(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user, data={"decision": "approve"})
    later = t0 + timedelta(hours=3)
    assert (review_reminders_send(now=later), review_escalations_run(now=later), review_expiries_run(now=later)) == (0, 0, 0)
    task.refresh_from_db()
    assert (task.reminded_at, task.escalated_at, task.expired_at) == (None, None, None)


@pytest.mark.embedded
@pytest.mark.django_db
def test_where_a_task_stands_against_its_due_date(acme):
    """The queue's filters and orderings by due date, and the standing in the detail."""
    set_policy(acme, escalate_after_seconds=None, expire_after_seconds=None, expiry_action="nothing")
    now = timezone.now()
    [late] = tasks_at(acme, now - timedelta(seconds=4000))  # due 400 s ago
    [soon] = tasks_at(acme, now - timedelta(seconds=3300))  # reminder 300 s ago, due in 300 s
    [fresh] = tasks_at(acme, now - timedelta(seconds=60))
    [met] = tasks_at(acme, now - timedelta(seconds=120))
    review_task_resume(tenant=acme.tenant, task_id=met.pk, user=acme.reviewer.user, data={"decision": "approve"})
    review_reminders_send(now=now)

    def listed(**params) -> list[str]:
        response = acme.reviewer.client.get(acme.url("reviews/"), params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert listed(overdue="true") == [str(late.pk)]
    assert set(listed(overdue="false")) == {str(soon.pk), str(fresh.pk), str(met.pk)}
    assert listed(status="pending", ordering="deadline") == [str(late.pk), str(soon.pk), str(fresh.pk)]
    assert listed(due_before=(now + timedelta(seconds=600)).isoformat(), status="pending") == [str(late.pk), str(soon.pk)]
    assert set(listed(due_after=(now + timedelta(seconds=600)).isoformat())) == {str(fresh.pk), str(met.pk)}
    # Reminded tasks rise: `late` and `soon` were both reminded, the earlier due first.
    assert listed(status="pending", ordering="priority") == [str(late.pk), str(soon.pk), str(fresh.pk)]

    standing = {row["id"]: row["due_status"] for row in acme.reviewer.client.get(acme.url("reviews/")).json()["results"]}
    assert standing == {str(late.pk): "overdue", str(soon.pk): "due_soon", str(fresh.pk): "on_time", str(met.pk): "met"}
    detail = acme.reviewer.client.get(acme.url(f"reviews/{late.pk}/")).json()
    assert detail["due_status"] == "overdue" and detail["due_in_seconds"] < 0


# --- Escalation ------------------------------------------------------------------------------


@pytest.mark.embedded
@pytest.mark.django_db
def test_escalation_without_keeping_grants_moves_the_decision_to_the_escalation_team(acme):
    set_policy(acme)  # legal -> senior, original grants removed
    t0 = timezone.now() - timedelta(seconds=1800)
    task, other = tasks_at(acme, t0, count=2)
    review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user)
    assert may_decide(acme, acme.reviewer, task) and may_decide(acme, acme.reviewer2, task)

    assert review_escalations_run(now=t0 + timedelta(seconds=1799)) == 0
    assert review_escalations_run(now=t0 + timedelta(seconds=1800)) == 2
    assert review_escalations_run(now=t0 + timedelta(seconds=1900)) == 0

    task.refresh_from_db()
    assert task.escalated_at == t0 + timedelta(seconds=1800) and task.priority == 40 + 30
    # Who may decide: the senior team (and admins); the reviewers' team no longer.
    assert not may_decide(acme, acme.reviewer, task) and not may_decide(acme, acme.reviewer2, task)
    assert may_decide(acme, acme.senior, task) and may_decide(acme, acme.admin, task)
    teams = set(ReviewTaskGroupPermission.objects.filter(content_object=task).values_list("group__tenant_group__team", flat=True))
    assert teams == {"senior"}
    # The claim of someone who may no longer decide is dropped.
    assert task.claimed_by_id is None
    [record] = audit(task, "review.escalated")
    assert record.interface == "system" and record.actor is None
    assert record.data == {"because": "escalate_after", "to_team": "senior", "team_grant_added": True, "kept_grants": False,
                           "removed_grants": {"teams": ["reviewers"], "users": []}, "claim_dropped": acme.reviewer.user.username}
    [event] = events_of("review.escalated", task)
    assert event.data["escalated_to"] == "senior" and event.data["kept_grants"] is False

    # Over the API: the reviewer is refused, the senior decides.
    refused = acme.reviewer.client.post(acme.url(f"reviews/{other.pk}/resume/"), {"decision": "approve"}, format="json")
    assert refused.status_code == 403, refused.content
    with TestCase.captureOnCommitCallbacks(execute=True):
        accepted = acme.senior.client.post(acme.url(f"reviews/{other.pk}/resume/"), {"decision": "reject"}, format="json")
    assert accepted.status_code == 202, accepted.content
    listed = acme.reviewer.client.get(acme.url("reviews/"), {"escalated": "true", "actionable": "true"}).json()["results"]
    assert listed == []


@pytest.mark.django_db
def test_escalation_keeping_grants_adds_the_escalation_team(acme):
    set_policy(acme, kind="finance", escalation_keeps_grants=True)  # finance -> senior, finance team kept
    t0 = timezone.now() - timedelta(seconds=1800)
    [task] = tasks_at(acme, t0, kind="finance")
    assert may_decide(acme, acme.reviewer2, task) and not may_decide(acme, acme.senior, task)
    assert review_escalations_run(now=t0 + timedelta(seconds=1800)) == 1
    assert may_decide(acme, acme.reviewer2, task) and may_decide(acme, acme.senior, task)
    assert not may_decide(acme, acme.reviewer, task)
    [record] = audit(task, "review.escalated")
    assert record.data["kept_grants"] is True and record.data["removed_grants"] == {"teams": [], "users": []}


@pytest.mark.embedded
@pytest.mark.django_db
def test_escalation_changes_who_may_decide_in_the_admin(acme):
    set_policy(acme)
    t0 = timezone.now() - timedelta(seconds=1800)
    [task] = tasks_at(acme, t0)
    clients = {}
    for role in ("reviewer", "senior"):
        member = getattr(acme, role)
        member.user.is_staff = True
        member.user.save(update_fields=["is_staff"])
        clients[role] = Client()
        clients[role].force_login(member.user)
    url = f"/admin/reviews/reviewtask/{task.pk}/change/"

    def has_decision_form(role: str) -> bool:
        response = clients[role].get(url)
        assert response.status_code == 200, response.status_code
        return response.context["may_decide"]

    assert has_decision_form("reviewer")
    review_escalations_run(now=t0 + timedelta(seconds=1800))
    assert not has_decision_form("reviewer")
    assert has_decision_form("senior")
    # A decision posted by the reviewer anyway is not recorded.
    refused = clients["reviewer"].post(url, {"decision": "approve", "comment": ""})
    assert refused.status_code == 403
    task.refresh_from_db()
    assert task.status == "pending"
    with TestCase.captureOnCommitCallbacks(execute=True):
        clients["senior"].post(url, {"decision": "approve", "comment": ""})
    task.refresh_from_db()
    assert (task.status, task.decided_by_id) == ("resolved", acme.senior.user.pk)


# --- Two schedulers racing ---------------------------------------------------------------------


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_reminders_and_escalations_fire_once_each_with_two_schedulers_racing(acme):
    set_policy(acme, expire_after_seconds=None, expiry_action="nothing")
    t0 = timezone.now() - timedelta(hours=1)
    tasks = tasks_at(acme, t0, count=40)
    later = t0 + timedelta(hours=1)
    for job, event_type, fired in ((review_reminders_send, "review.due_soon", "reminded_at"),
                                   (review_escalations_run, "review.escalated", "escalated_at")):
        # Two leaders' runs of the same job at the same moment (a change of leader).
        results = race(2, lambda i: job(now=later))
        assert [kind for kind, _ in results] == ["ok", "ok"], results
        assert sum(value for _, value in results) == len(tasks), (job.__name__, results)
        per_task = Counter(QueueEvent.objects.filter(type=event_type).values_list("task_id", flat=True))
        assert per_task == Counter({t.pk: 1 for t in tasks}), job.__name__
        assert AuditRecord.objects.filter(action=event_type).count() == len(tasks)
        assert not ReviewTask.objects.filter(pk__in=[t.pk for t in tasks], **{f"{fired}__isnull": True}).exists()
    assert ReviewTaskGroupPermission.objects.filter(content_object__in=tasks, group__tenant_group__team="senior").count() == 40


# --- Expiry --------------------------------------------------------------------------------------


@pytest.mark.embedded
@pytest.mark.django_db
def test_expiry_rejects_with_its_reason_and_the_contract_ends_rejected(acme):
    set_policy(acme)
    contract = submit(acme, HIGH_RISK_TEXT)
    task = pending(contract)["legal"]
    assert review_expiries_run(now=task.expire_at - timedelta(seconds=1)) == 0
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert review_expiries_run(now=task.expire_at) == 1
    assert review_expiries_run(now=task.expire_at + timedelta(hours=1)) == 0

    task.refresh_from_db()
    contract.refresh_from_db()
    reason = POLICY["expiry_reason"]
    assert (task.status, task.expired_at, task.decided_by_id) == ("resolved", task.expire_at, None)
    assert task.decision["decision"] == "reject" and task.decision["comment"] == reason
    assert task.applied_at is not None  # the graph consumed it
    assert contract.status == "rejected"
    [entry] = contract.decision_history
    assert (entry["decision"], entry["comment"], entry["decided_by"]) == ("reject", reason, None)
    assert [r.data for r in audit(task, "review.expired")] == [{"action": "reject", "reason": reason}]
    [resolved] = audit(task, "review.resolved")
    assert resolved.actor is None and resolved.interface == "system" and resolved.data["by"] == "expiry"
    assert [e.type for e in QueueEvent.objects.filter(task=task).order_by("seq")][-2:] == ["review.expired", "review.resolved"]
    # Over the API: the task says so, and a late reviewer is told it is decided.
    detail = acme.reviewer.client.get(acme.url(f"reviews/{task.pk}/")).json()
    assert detail["status"] == "resolved" and detail["expired_at"] and detail["due_status"] == "missed"
    late = acme.reviewer.client.post(acme.url(f"reviews/{task.pk}/resume/"), {"decision": "approve"}, format="json")
    assert late.status_code == 409


@pytest.mark.django_db
def test_an_expiry_that_does_nothing_leaves_the_task_open_marked_expired(acme):
    set_policy(acme, escalate_after_seconds=None, expiry_action="nothing", expiry_reason="")
    t0 = timezone.now() - timedelta(hours=2)
    [task] = tasks_at(acme, t0)
    assert review_expiries_run(now=t0 + timedelta(hours=2)) == 1
    assert review_expiries_run(now=t0 + timedelta(hours=3)) == 0
    task.refresh_from_db()
    assert task.status == "pending" and task.expired_at == t0 + timedelta(hours=2)
    [record] = audit(task, "review.expired")
    assert record.data == {"action": "nothing", "reason": "No decision within 2 hours: the legal review policy marks it expired."}
    review_task_resume(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user, data={"decision": "approve"})


@pytest.mark.django_db
def test_an_expiry_that_escalates_escalates_once(acme):
    set_policy(acme, escalate_after_seconds=None, expiry_action="escalate")
    t0 = timezone.now() - timedelta(hours=2)
    [task] = tasks_at(acme, t0)
    assert review_expiries_run(now=t0 + timedelta(hours=2)) == 1
    task.refresh_from_db()
    assert task.status == "pending" and task.escalated_at == task.expired_at
    assert not may_decide(acme, acme.reviewer, task) and may_decide(acme, acme.senior, task)
    [record] = audit(task, "review.escalated")
    assert record.data["because"] == "expiry"
    assert review_escalations_run(now=t0 + timedelta(hours=3)) == 0


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_fifty_expiries_racing_a_reviewers_decision_each_leave_exactly_one_outcome(acme, monkeypatch):
    set_policy(acme, kind="finance", escalate_after_seconds=None)
    runs = graph_runs_spy(monkeypatch)
    winners = Counter()
    for run in range(50):
        contract = submit(acme, LARGE_PAYMENT_TEXT, title=f"PO {run}")  # finance review only
        task = pending(contract)["finance"]
        resumes_before = len([c for c in runs if c[0] == "resume"])

        def attempt(index: int):
            if index == 0:
                return "expiry" if review_expiries_run(now=task.expire_at) else None
            try:
                review_task_resume(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer2.user,
                                   data={"decision": "approve"})
                return "reviewer"
            except Conflict:
                return None

        results = race(2, attempt)
        assert all(kind == "ok" for kind, _ in results), results
        won = [value for _, value in results if value]
        assert len(won) == 1, (run, results)
        winners[won[0]] += 1

        task.refresh_from_db()
        contract.refresh_from_db()
        expected = {"expiry": ("reject", "rejected", None), "reviewer": ("approve", "approved", acme.reviewer2.user.pk)}
        assert (task.decision["decision"], contract.status, task.decided_by_id) == expected[won[0]], run
        assert len(audit(task, "review.resolved")) == 1
        assert QueueEvent.objects.filter(task=task, type="review.resolved").count() == 1
        assert len(contract.decision_history) == 1
        # The graph was resumed once, with that outcome.
        resumes = [c for c in runs if c[0] == "resume"][resumes_before:]
        assert resumes == [("resume", contract.thread_id, [task.interrupt_id])], (run, resumes)
    assert sum(winners.values()) == 50
    print(f"\nexpiry vs reviewer over 50 runs: {dict(winners)}")
