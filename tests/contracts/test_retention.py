"""Retention of LangGraph checkpoints (contracts.retention): the rows of threads whose
contract finished more than the tenant's days ago go; waiting threads, recent ones and
any thread that still has work stay (row counts before and after); the contract reads
the same afterwards; a dry run says what would go; figures of what went."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from contracts.graph import runner
from contracts.models import Contract
from contracts.retention import checkpoints_prune
from contracts.services import contract_drive
from reviews.models import ReviewTask
from tenants.models import AuditRecord
from tests.api_flow import pending, resume, submit
from tests.factories import HIGH_RISK_TEXT, LOW_RISK_TEXT
from tests.support import postgresql_only, race

NOT_FOUND = {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}


def finished_days_ago(contract: Contract, days: float) -> Contract:
    Contract.objects.filter(pk=contract.pk).update(completed_at=timezone.now() - timedelta(days=days))
    contract.refresh_from_db()
    return contract


def rows(contract: Contract) -> int:
    return sum(runner.checkpoint_rows([contract.thread_id]).values())


@pytest.fixture
def threads(acme):
    """acme's contracts in every state retention must tell apart."""
    old_auto = finished_days_ago(submit(acme, LOW_RISK_TEXT, title="old NDA"), 40)
    reviewed = submit(acme, HIGH_RISK_TEXT, title="old MSA")
    resume(acme.reviewer, acme, pending(reviewed)["legal"], {"decision": "reject", "comment": "Uncapped liability."})
    old_reviewed = finished_days_ago(reviewed, 40)
    waiting = submit(acme, HIGH_RISK_TEXT, title="waiting MSA")
    Contract.objects.filter(pk=waiting.pk).update(created_at=timezone.now() - timedelta(days=90))
    recent = finished_days_ago(submit(acme, LOW_RISK_TEXT, title="recent NDA"), 5)
    # Final in our table, yet its thread still waits on an interrupt: never touched.
    odd = submit(acme, HIGH_RISK_TEXT, title="odd MSA")
    Contract.objects.filter(pk=odd.pk).update(status="cancelled")
    odd = finished_days_ago(odd, 40)
    assert {c.status for c in (old_auto, old_reviewed, waiting, recent)} == {"auto_approved", "rejected",
                                                                           "waiting_for_review"}
    return {"old_auto": old_auto, "old_reviewed": old_reviewed, "waiting": waiting, "recent": recent, "odd": odd}


@pytest.mark.embedded
@pytest.mark.django_db
def test_old_finished_threads_lose_their_checkpoints_and_nothing_else_does(acme, threads):
    before = {name: rows(c) for name, c in threads.items()}
    assert all(before.values()), before  # every thread has checkpoint rows to start with
    detail_before = acme.viewer.client.get(acme.url(f"contracts/{threads['old_reviewed'].pk}/")).json()

    report = checkpoints_prune(tenant=acme.tenant)

    after = {name: rows(c) for name, c in threads.items()}
    assert after == {**before, "old_auto": 0, "old_reviewed": 0}
    assert (report.threads, report.rows) == (2, before["old_auto"] + before["old_reviewed"])
    assert sum(report.rows_by_table.values()) == report.rows
    assert set(report.contracts) == {str(threads["old_auto"].pk), str(threads["old_reviewed"].pk)}
    assert report.skipped == [{"contract": str(threads["odd"].pk),
                               "reason": "its thread still has work: legal_review"}]
    print(f"\npruned {report.threads} threads, {report.rows} rows: {report.rows_by_table}; "
          f"per thread: {before['old_auto']} (auto-approved), {before['old_reviewed']} (one review)")

    # LangGraph knows those threads no more; the waiting one still waits.
    assert not runner.thread_snapshot(threads["old_reviewed"].thread_id).exists
    assert [p.kind for p in runner.thread_snapshot(threads["waiting"].thread_id).pending] == ["legal"]

    # The contract reads the same: final state, findings, decisions, amendments, tasks.
    detail_after = acme.viewer.client.get(acme.url(f"contracts/{threads['old_reviewed'].pk}/")).json()
    assert detail_after.pop("checkpoints_pruned_at") is not None
    detail_before.pop("checkpoints_pruned_at")
    assert {k: v for k, v in detail_after.items() if k != "updated_at"} == \
        {k: v for k, v in detail_before.items() if k != "updated_at"}
    assert detail_after["status"] == "rejected"
    assert [(h["decision"], h["comment"]) for h in detail_after["decision_history"]] == [("reject", "Uncapped liability.")]
    task = ReviewTask.objects.get(contract=threads["old_reviewed"])
    task_detail = acme.reviewer.client.get(acme.url(f"reviews/{task.pk}/")).json()
    assert task_detail["decision"]["decision"] == "reject" and task_detail["history"]
    assert AuditRecord.objects.filter(target_id=str(task.pk), action="review.resolved").exists()
    [record] = AuditRecord.objects.filter(tenant=acme.tenant, action="checkpoints.pruned")
    assert record.data == {"threads": 2, "rows": report.rows, "retention_days": 30}

    # Idempotent, and a drive of a pruned contract brings nothing back.
    assert checkpoints_prune(tenant=acme.tenant).threads == 0
    contract_drive(tenant_id=acme.tenant.id, contract_id=threads["old_reviewed"].pk)
    assert rows(threads["old_reviewed"]) == 0


@pytest.mark.embedded
@pytest.mark.django_db
def test_a_dry_run_says_what_would_go_and_deletes_nothing(acme, threads):
    before = {name: rows(c) for name, c in threads.items()}
    out = StringIO()
    call_command("prune_checkpoints", "--tenant", "acme", "--dry-run", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["dry_run"] is True
    assert report["threads"] == 2 and report["rows"] == before["old_auto"] + before["old_reviewed"]
    assert report["tenants"] == {"acme": {"threads": 2, "rows": report["rows"]}}
    assert {name: rows(c) for name, c in threads.items()} == before
    assert not Contract.objects.filter(checkpoints_pruned_at__isnull=False).exists()
    assert not AuditRecord.objects.filter(action="checkpoints.pruned").exists()

    text = StringIO()
    call_command("prune_checkpoints", "--tenant", "acme", stdout=text)
    assert text.getvalue().startswith(f"deleted the checkpoints of 2 thread(s): {report['rows']} rows (")
    assert "left alone: contract" in text.getvalue()
    assert rows(threads["old_auto"]) == 0


@pytest.mark.django_db
def test_a_tenant_without_a_retention_period_keeps_everything(acme, globex, threads):
    acme.tenant.checkpoint_retention_days = None
    acme.tenant.save()
    old_globex = finished_days_ago(submit(globex, LOW_RISK_TEXT), 40)
    report = checkpoints_prune()
    assert report.tenants == {"globex": {"threads": 1, "rows": report.rows}}
    assert rows(threads["old_auto"]) > 0 and rows(old_globex) == 0


@pytest.mark.django_db
def test_a_shorter_period_reaches_more_threads(acme, threads):
    acme.tenant.checkpoint_retention_days = 3
    acme.tenant.save()
    assert checkpoints_prune(tenant=acme.tenant).threads == 3  # the recent one too
    assert rows(threads["recent"]) == 0 and rows(threads["waiting"]) > 0


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_two_prunes_racing_delete_each_thread_once(acme):
    contracts = [finished_days_ago(submit(acme, LOW_RISK_TEXT, title=f"NDA {i}"), 40) for i in range(12)]
    results = race(2, lambda i: checkpoints_prune(tenant=acme.tenant).threads)
    assert [kind for kind, _ in results] == ["ok", "ok"], results
    assert sum(value for _, value in results) == 12
    assert all(rows(c) == 0 for c in contracts)
    assert sum(r.data["threads"] for r in AuditRecord.objects.filter(action="checkpoints.pruned")) == 12


# --- Retention over the API ---------------------------------------------------------------


@pytest.mark.django_db
def test_an_admin_reads_and_sets_the_retention_period(acme, threads):
    shown = acme.admin.client.get(acme.url("retention/")).json()
    assert shown == {"checkpoint_retention_days": 30, "prunable_threads": 3, "pruned_threads": 0}
    changed = acme.admin.client.patch(acme.url("retention/"), {"checkpoint_retention_days": 3}, format="json")
    assert changed.json() == {"checkpoint_retention_days": 3, "prunable_threads": 4, "pruned_threads": 0}
    checkpoints_prune(tenant=acme.tenant.__class__.objects.get(pk=acme.tenant.pk))
    assert acme.admin.client.get(acme.url("retention/")).json()["pruned_threads"] == 3
    off = acme.admin.client.patch(acme.url("retention/"), {"checkpoint_retention_days": None}, format="json")
    assert off.json()["checkpoint_retention_days"] is None
    record = AuditRecord.objects.filter(action="retention.changed").order_by("-id").first()
    assert record.data == {"checkpoint_retention_days": None, "previous": 3}


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{"checkpoint_retention_days": 0}, {"checkpoint_retention_days": "soon"},
                                  {"checkpoint_retention_days": 4000}, {}, {"days": 3}])
def test_a_bad_retention_period_is_a_400(acme, body):
    response = acme.admin.client.patch(acme.url("retention/"), body, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]["fields"]) <= {"checkpoint_retention_days", "days"}
    acme.tenant.refresh_from_db()
    assert acme.tenant.checkpoint_retention_days == 30


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["reviewer", "senior", "viewer", "agent"])
def test_only_tenant_admins_see_or_set_retention(acme, role):
    member = getattr(acme, role)
    assert member.client.get(acme.url("retention/")).status_code == 403
    assert member.client.patch(acme.url("retention/"), {"checkpoint_retention_days": 1}, format="json").status_code == 403
    acme.tenant.refresh_from_db()
    assert acme.tenant.checkpoint_retention_days == 30


@pytest.mark.django_db
def test_another_tenants_retention_is_a_404(acme, globex):
    for response in (acme.admin.client.get(globex.url("retention/")),
                     acme.admin.client.patch(globex.url("retention/"), {"checkpoint_retention_days": 1}, format="json")):
        assert (response.status_code, response.json()) == (404, NOT_FOUND)
    globex.tenant.refresh_from_db()
    assert globex.tenant.checkpoint_retention_days == 30
