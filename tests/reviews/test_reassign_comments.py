"""Reassign (a tenant admin gives a pending task to a member who may decide it: a
personal grant and a claim in their name until it is due) and comments (left by those
who may decide a task, before they decide; in the detail, the audit and the admin)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client, TestCase

from reviews.models import QueueEvent, ReviewComment, ReviewTaskUserPermission
from reviews.services import review_task_reassign
from tenants.models import AuditRecord
from tests.api_flow import pending, resume, submit
from tests.factories import CRITICAL_RISK_TEXT, HIGH_RISK_TEXT, LARGE_PAYMENT_TEXT

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

NOT_FOUND = {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}


def reassign(member, world, task, username: str):
    return member.client.post(world.url(f"reviews/{task.pk}/reassign/"), {"user": username}, format="json")


def comment(member, world, task, body: str = "Clause 7 caps nothing; check with the supplier."):
    return member.client.post(world.url(f"reviews/{task.pk}/comments/"), {"body": body}, format="json")


def assert_invalid(response, field: str) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["fields"] and error["message"].startswith(f"{field}:"), error


# --- Reassign -------------------------------------------------------------------------------


def test_reassign_gives_the_member_a_grant_and_a_claim_until_the_task_is_due(acme):
    task = pending(submit(acme, LARGE_PAYMENT_TEXT))["finance"]  # routed to the finance team (reviewer2)
    # The senior is not in the finance team: may not decide it before.
    assert acme.senior.client.post(acme.url(f"reviews/{task.pk}/claim/")).status_code == 403
    acme.reviewer2.client.post(acme.url(f"reviews/{task.pk}/claim/"))

    response = reassign(acme.admin, acme, task, acme.senior.user.username)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["claimed_by"] == acme.senior.user.username
    task.refresh_from_db()
    assert task.claim_expires_at == task.due_at  # the due date is later than one claim lease
    assert ReviewTaskUserPermission.objects.filter(content_object=task, user=acme.senior.user).exists()
    [record] = AuditRecord.objects.filter(action="review.reassigned", target_id=str(task.pk))
    assert record.actor == acme.admin.user
    assert record.data["to"] == acme.senior.user.username and record.data["grant_added"] is True
    assert record.data["previous_claim"]["claimed_by"] == acme.reviewer2.user.username
    [event] = QueueEvent.objects.filter(type="review.reassigned", task=task)
    assert event.data["assigned_to"] == acme.senior.user.username

    # Theirs now: the previous holder may not take it back, the assignee decides it.
    assert acme.reviewer2.client.post(acme.url(f"reviews/{task.pk}/claim/")).status_code == 409
    mine = acme.senior.client.get(acme.url("reviews/"), {"assignee": "me"}).json()["results"]
    assert [row["id"] for row in mine] == [str(task.pk)]
    assert resume(acme.senior, acme, task).status_code == 202


def test_reassign_refuses_a_member_whose_role_may_not_decide(acme):
    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    for member in (acme.viewer, acme.agent):
        assert_invalid(reassign(acme.admin, acme, task, member.user.username), "user")
    assert_invalid(reassign(acme.admin, acme, task, "nobody-here"), "user")
    assert not ReviewTaskUserPermission.objects.filter(content_object=task).exists()


def test_reassign_of_a_sign_off_respects_its_role_and_four_eyes(acme):
    contract = submit(acme, CRITICAL_RISK_TEXT)
    resume(acme.senior, acme, pending(contract)["legal"])
    signoff = pending(contract)["signoff"]
    # A plain reviewer may not give the critical sign-off, nor may the legal approver.
    assert_invalid(reassign(acme.admin, acme, signoff, acme.reviewer2.user.username), "user")
    response = reassign(acme.admin, acme, signoff, acme.senior.user.username)
    assert_invalid(response, "user")
    assert "Four eyes" in response.json()["error"]["message"]
    assert reassign(acme.admin, acme, signoff, acme.admin.user.username).status_code == 200


def test_a_grant_of_a_sign_off_respects_its_role_as_a_reassign_does(acme):
    contract = submit(acme, CRITICAL_RISK_TEXT)
    resume(acme.senior, acme, pending(contract)["legal"])
    signoff = pending(contract)["signoff"]
    response = acme.admin.client.post(acme.url(f"reviews/{signoff.pk}/grants/"),
                                      {"user": acme.reviewer2.user.username}, format="json")
    assert_invalid(response, "user")
    assert "sign-off role" in response.json()["error"]["message"]
    assert not ReviewTaskUserPermission.objects.filter(content_object=signoff).exists()
    ok = acme.admin.client.post(acme.url(f"reviews/{signoff.pk}/grants/"), {"user": acme.admin.user.username},
                                format="json")
    assert ok.status_code == 200, ok.content


def test_reassign_of_a_decided_task_is_409(acme):
    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    resume(acme.reviewer, acme, task)
    assert reassign(acme.admin, acme, task, acme.senior.user.username).status_code == 409


@pytest.mark.parametrize("role", ["reviewer", "senior", "viewer", "agent"])
def test_only_a_tenant_admin_reassigns(acme, role):
    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    response = reassign(getattr(acme, role), acme, task, acme.senior.user.username)
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    task.refresh_from_db()
    assert task.claimed_by_id is None


def test_another_tenants_task_or_member_is_not_reassigned(acme, globex):
    acme_task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    globex_task = pending(submit(globex, HIGH_RISK_TEXT))["legal"]
    response = reassign(acme.admin, acme, globex_task, acme.senior.user.username)
    assert (response.status_code, response.json()) == (404, NOT_FOUND)
    assert reassign(globex.admin, acme, acme_task, globex.senior.user.username).status_code == 404
    # A member of another tenant is no member here.
    assert_invalid(reassign(acme.admin, acme, acme_task, globex.senior.user.username), "user")
    assert not ReviewTaskUserPermission.objects.exists()


# --- Comments -------------------------------------------------------------------------------


def test_a_reviewer_comments_before_deciding_and_everyone_reading_the_queue_sees_it(acme):
    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    response = comment(acme.reviewer, acme, task)
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["author"] == acme.reviewer.user.username
    comment(acme.senior, acme, task, "Agreed; ask for a cap of 12 months' fees.")

    listed = acme.viewer.client.get(acme.url(f"reviews/{task.pk}/comments/")).json()["results"]
    assert [(c["author"], c["body"]) for c in listed] == [
        (acme.reviewer.user.username, "Clause 7 caps nothing; check with the supplier."),
        (acme.senior.user.username, "Agreed; ask for a cap of 12 months' fees."),
    ]
    detail = acme.viewer.client.get(acme.url(f"reviews/{task.pk}/")).json()
    assert [c["id"] for c in detail["comments"]] == [c["id"] for c in listed]
    assert [h["action"] for h in detail["history"]].count("review.commented") == 2
    record = AuditRecord.objects.filter(action="review.commented", target_id=str(task.pk)).order_by("id").first()
    assert record.data["body"] == "Clause 7 caps nothing; check with the supplier."
    assert QueueEvent.objects.filter(type="review.commented", task=task).count() == 2


def test_comments_are_for_tasks_still_to_decide(acme):
    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    resume(acme.reviewer, acme, task)
    assert comment(acme.reviewer, acme, task).status_code == 409


def test_a_comment_must_have_text(acme):
    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    assert_invalid(comment(acme.reviewer, acme, task, "   "), "body")
    assert_invalid(comment(acme.reviewer, acme, task, "x" * 5001), "body")
    assert_invalid(acme.reviewer.client.post(acme.url(f"reviews/{task.pk}/comments/"), {"text": "hi"}, format="json"), "text")
    assert not ReviewComment.objects.exists()


def test_only_those_who_may_decide_the_task_comment(acme):
    task = pending(submit(acme, LARGE_PAYMENT_TEXT))["finance"]
    # The viewer's and the agent's roles may not; the reviewer is outside the finance team.
    for member in (acme.viewer, acme.agent, acme.reviewer):
        response = comment(member, acme, task)
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert acme.agent.client.get(acme.url(f"reviews/{task.pk}/comments/")).status_code == 403
    assert comment(acme.reviewer2, acme, task).status_code == 201
    assert comment(acme.admin, acme, task).status_code == 201


def test_another_tenants_task_comments_are_a_404(acme, globex):
    globex_task = pending(submit(globex, HIGH_RISK_TEXT))["legal"]
    comment(globex.reviewer, globex, globex_task)
    for response in (acme.admin.client.get(acme.url(f"reviews/{globex_task.pk}/comments/")),
                     comment(acme.admin, acme, globex_task),
                     acme.admin.client.get(globex.url(f"reviews/{globex_task.pk}/comments/"))):
        assert (response.status_code, response.json()) == (404, NOT_FOUND)
    assert ReviewComment.objects.filter(tenant=acme.tenant).count() == 0


def test_a_reviewer_comments_in_the_admin_too(acme, globex):
    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    globex_task = pending(submit(globex, HIGH_RISK_TEXT))["legal"]
    acme.reviewer.user.is_staff = True
    acme.reviewer.user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(acme.reviewer.user)
    form = client.get("/admin/reviews/reviewcomment/add/").context["adminform"].form
    assert list(form.fields["task"].queryset) == [task]  # nothing of globex's

    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post("/admin/reviews/reviewcomment/add/", {"task": str(task.pk), "body": "Needs a cap."})
    assert response.status_code == 302
    saved = ReviewComment.objects.get(task=task)
    assert (saved.author, saved.body) == (acme.reviewer.user, "Needs a cap.")
    assert AuditRecord.objects.filter(action="review.commented", interface="admin").count() == 1
    refused = client.post("/admin/reviews/reviewcomment/add/", {"task": str(globex_task.pk), "body": "x"})
    assert refused.status_code == 200 and "task" in refused.context["adminform"].form.errors
    assert not ReviewComment.objects.filter(task=globex_task).exists()


def test_a_reassigned_claim_lasts_at_least_one_lease(acme):
    """Past its due date a task still goes to its assignee for one claim lease."""
    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    now = task.due_at + timedelta(hours=1)
    review_task_reassign(tenant=acme.tenant, task_id=task.pk, actor=acme.admin.user, username=acme.senior.user.username,
                         via="api", now=now)
    task.refresh_from_db()
    assert task.claim_expires_at == now + timedelta(seconds=acme.tenant.claim_lease_seconds)
