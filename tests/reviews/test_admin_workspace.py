"""The reviewer's workspace in the Django admin: the queue opens on what I may decide now;
the task page leads with title, risk and recommendation, highlights the findings in the
text, shows the thread's decisions, offers claim/release and explicit Approve / Reject /
Amend with nothing preselected; a refusal is one clear message and keeps what was typed;
bulk decisions confirm first and never take critical or sign-off tasks; tenant admins
pick grants by title, read team names, give passwords or set-password links, and cannot
grant to a role that never decides. Another tenant's admin sees none of it."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client, TestCase

from reviews.models import ReviewTask, ReviewTaskUserPermission
from reviews.services import review_task_claim
from tenants.models import AuditRecord, Membership
from tests.api_flow import pending, resume, submit
from tests.factories import CRITICAL_RISK_TEXT, HIGH_RISK_LARGE_PAYMENT_TEXT, HIGH_RISK_TEXT, LARGE_PAYMENT_TEXT

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

QUEUE = "/admin/reviews/reviewtask/"


def staff(member) -> Client:
    member.user.is_staff = True  # the admin site needs it; the tenant role decides the rest
    member.user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(member.user)
    return client


def page(task: ReviewTask) -> str:
    return f"{QUEUE}{task.pk}/change/"


def post(client: Client, url: str, data: dict):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(url, data)


def texts(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def listed(response) -> list[str]:
    return [str(task.pk) for task in response.context["cl"].result_list]


def status_of(task: ReviewTask) -> str:
    task.refresh_from_db()
    return task.status


# --- The queue -------------------------------------------------------------------------------


def test_the_queue_opens_on_my_pending_tasks_highest_risk_then_oldest(acme):
    high = pending(submit(acme, HIGH_RISK_TEXT, title="Older high"))["legal"]
    critical = pending(submit(acme, CRITICAL_RISK_TEXT, title="Critical supply"))["legal"]
    newer = pending(submit(acme, HIGH_RISK_TEXT, title="Newer high"))["legal"]
    finance = pending(submit(acme, LARGE_PAYMENT_TEXT, title="Big order"))["finance"]
    done = pending(submit(acme, HIGH_RISK_TEXT, title="Decided"))["legal"]
    resume(acme.reviewer2, acme, done)
    claimed = pending(submit(acme, HIGH_RISK_TEXT, title="Someone else's"))["legal"]
    review_task_claim(tenant=acme.tenant, task_id=claimed.pk, user=acme.reviewer2.user)

    response = staff(acme.reviewer).get(QUEUE)
    assert response.status_code == 200
    # Not the finance task (not the reviewer's), not the decided one, not one claimed by another.
    assert listed(response) == [str(critical.pk), str(high.pk), str(newer.pk)]
    html = response.content.decode()
    assert 'class="hitl-risk hitl-risk-critical"' in html and 'class="hitl-risk hitl-risk-high"' in html
    for column in ("contract", "kind", "risk", "waiting", "due", "claimed by"):
        assert f">{column.capitalize()}<" in html or f">{column}<" in html.lower(), column
    assert 'data-tenants="acme"' in html and "reviews/queue.js" in html  # follows the live queue
    # Everything pending, the claimed one with its holder, is one click away.
    everything = staff(acme.reviewer).get(QUEUE, {"show": "pending"})
    assert {str(finance.pk), str(claimed.pk)} <= set(listed(everything))
    assert "acme-reviewer2" in everything.content.decode()


def test_another_tenants_reviewer_sees_an_empty_queue_and_no_task_page(acme, globex):
    task = pending(submit(acme, HIGH_RISK_TEXT, title="ACME-ONLY deal"))["legal"]
    client = staff(globex.reviewer)
    assert listed(client.get(QUEUE, {"show": "all"})) == []
    response = client.get(page(task), follow=True)
    assert "ACME-ONLY" not in response.content.decode()


# --- The task page ---------------------------------------------------------------------------


def test_the_task_page_leads_with_title_risk_and_recommendation_and_preselects_nothing(acme):
    contract = submit(acme, CRITICAL_RISK_TEXT, title="Supply deal")
    task = pending(contract)["legal"]
    html = staff(acme.reviewer).get(page(task)).content.decode()
    heading = re.search(r'<h1 class="hitl-title">(.*?)</h1>', html, re.S).group(1)
    assert "Supply deal" in heading and "hitl-risk-critical" in heading
    assert "CRITICAL RISK" in html
    assert html.index("CRITICAL RISK") < html.index('name="decision"') < html.index("Contract text")
    # Three explicit buttons, no select, nothing checked or preselected.
    assert re.findall(r'<button type="submit" name="decision" value="(\w+)"', html) == ["approve", "reject", "amend"]
    assert "<select" not in html.split('id="hitl-decide-form"')[1].split("</form>")[0]
    assert " checked" not in html and "selected" not in html.split('id="hitl-decide-form"')[1].split("</form>")[0]
    # Each finding is a table row, and its matched words are marked in the contract text.
    assert html.count('<tr data-finding="') == len(contract.findings) >= 4
    marked = re.findall(r'<mark class="hitl-finding"[^>]*>(.*?)</mark>', html, re.S)
    for finding in contract.findings:
        if finding["start"] >= 0:
            assert contract.text[finding["start"]:finding["end"]] in marked, finding["rule"]


def test_claim_and_release_from_the_task_page(acme):
    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    client = staff(acme.reviewer)
    assert 'value="claim"' in client.get(page(task)).content.decode()
    claimed = client.post(page(task), {"action": "claim"})
    assert claimed.status_code == 302
    task.refresh_from_db()
    assert task.claimed_by_id == acme.reviewer.user.pk
    assert 'value="release"' in client.get(page(task)).content.decode()
    assert client.post(page(task), {"action": "release"}).status_code == 302
    task.refresh_from_db()
    assert task.claimed_by_id is None
    actions = list(AuditRecord.objects.filter(target_id=str(task.pk)).values_list("action", "interface"))
    assert ("review.claimed", "admin") in actions and ("review.released", "admin") in actions


def test_a_task_claimed_by_someone_else_is_one_clear_refusal_that_keeps_what_was_typed(acme):
    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.senior.user)
    response = post(staff(acme.reviewer), page(task), {
        "decision": "amend", "comment": "cap it", "amendments": ["Liability capped at fees paid.", ""]})
    assert response.status_code == 200
    [(level, text)] = texts(response)  # one message, no "changed successfully" beside it
    assert level == "error" and "claimed by acme-senior" in text
    html = response.content.decode()
    assert ">cap it</textarea>" in html and 'value="Liability capped at fees paid."' in html
    assert status_of(task) == "pending"


def test_amend_without_an_amendment_says_so_plainly(acme):
    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    response = post(staff(acme.reviewer), page(task), {"decision": "amend", "comment": "x", "amendments": ["  "]})
    [(level, text)] = texts(response)
    assert (level, text) == ("error", "Amend needs at least one amendment: write what should change.")
    assert "{" not in text and status_of(task) == "pending"


def test_an_approval_from_the_task_page_goes_back_to_the_queue(acme):
    contract = submit(acme, HIGH_RISK_TEXT, title="MSA")
    task = pending(contract)["legal"]
    response = post(staff(acme.reviewer), page(task), {"decision": "approve", "comment": "ok", "amendments": ["x"]})
    assert response.status_code == 302 and response["Location"] == QUEUE
    contract.refresh_from_db()
    task.refresh_from_db()
    assert contract.status == "approved" and task.decision["amendments"] == []  # typed but not an amend


def test_the_sign_off_shows_the_first_signature_and_refuses_the_first_signer(acme):
    contract = submit(acme, CRITICAL_RISK_TEXT, title="Critical deal")
    legal = pending(contract)["legal"]
    post(staff(acme.senior), page(legal), {"decision": "approve"})
    signoff = pending(contract)["signoff"]
    first = staff(acme.senior)
    html = first.get(page(signoff)).content.decode()
    assert "First signature: <strong>acme-senior</strong>" in html
    refused = post(first, page(signoff), {"decision": "approve", "comment": "me again"})
    [(level, text)] = texts(refused)
    assert level == "error" and text.startswith("Four eyes: you gave the legal approval")
    assert ">me again</textarea>" in refused.content.decode()
    assert status_of(signoff) == "pending"
    # Another senior (here the tenant admin) may.
    assert post(staff(acme.admin), page(signoff), {"decision": "approve"}).status_code == 302
    contract.refresh_from_db()
    assert contract.status == "approved"


def test_a_viewer_sees_the_task_but_no_decision_and_cannot_post_one(acme):
    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    client = staff(acme.viewer)
    html = client.get(page(task)).content.decode()
    assert "You may look at this task but not decide it." in html and 'name="decision"' not in html
    assert post(client, page(task), {"decision": "approve"}).status_code == 403
    assert status_of(task) == "pending"


# --- Bulk ------------------------------------------------------------------------------------


def test_bulk_approve_confirms_first_and_never_takes_critical_or_sign_off_tasks(acme):
    high = pending(submit(acme, HIGH_RISK_TEXT, title="Plain high"))["legal"]
    critical_contract = submit(acme, CRITICAL_RISK_TEXT, title="Critical one")
    critical = pending(critical_contract)["legal"]
    signoff_contract = submit(acme, CRITICAL_RISK_TEXT, title="Needs sign-off")
    resume(acme.senior, acme, pending(signoff_contract)["legal"])
    signoff = pending(signoff_contract)["signoff"]
    client = staff(acme.admin)
    selected = {"action": "approve_selected", "select_across": "0", "index": "0",
                "_selected_action": [str(high.pk), str(critical.pk), str(signoff.pk)]}

    confirm = post(client, QUEUE, selected)
    assert confirm.status_code == 200
    html = confirm.content.decode()
    for title in ("Plain high", "Critical one", "Needs sign-off"):
        assert title in html
    assert html.count("hitl-risk-critical") == 2 and "hitl-risk-high" in html
    assert "skipped: critical risk is never decided in bulk" in html
    assert "skipped: a sign-off is never decided in bulk" in html
    assert "Yes, approve 1 task" in html
    assert {status_of(t) for t in (high, critical, signoff)} == {"pending"}  # nothing decided yet

    done = post(client, QUEUE, {**{k: v for k, v in selected.items() if k != "index"}, "post": "yes"})
    assert done.status_code == 302
    assert (status_of(high), status_of(critical), status_of(signoff)) == ("resolved", "pending", "pending")


# --- Tenant admins ---------------------------------------------------------------------------


def test_the_grant_picker_offers_pending_tasks_by_title_and_teams_by_name(acme, globex):
    contract = submit(acme, HIGH_RISK_LARGE_PAYMENT_TEXT, title="Cloud contract")
    decided = pending(submit(acme, HIGH_RISK_TEXT, title="Already decided"))["legal"]
    resume(acme.reviewer, acme, decided)
    submit(globex, HIGH_RISK_TEXT, title="Globex secret")
    client = staff(acme.admin)
    form = client.get("/admin/reviews/reviewtaskuserpermission/add/").content.decode()
    assert "Cloud contract — Legal review" in form and "Cloud contract — Finance review" in form
    assert "Already decided" not in form and "Globex secret" not in form
    teams = client.get("/admin/reviews/reviewtaskgrouppermission/add/").content.decode()
    assert "acme: Reviewers" in teams and "acme: Finance" in teams
    assert f"{acme.tenant.pk}:" not in teams and "globex" not in teams

    finance = pending(contract)["finance"]
    added = client.post("/admin/reviews/reviewtaskuserpermission/add/",
                        {"content_object": str(finance.pk), "user": str(acme.senior.user.pk)})
    assert added.status_code == 302
    listing = client.get("/admin/reviews/reviewtaskuserpermission/").content.decode()
    assert "Cloud contract — Finance review" in listing and "acme-senior" in listing


def test_a_grant_to_a_role_that_never_decides_is_refused_with_a_clear_message(acme):
    task = pending(submit(acme, LARGE_PAYMENT_TEXT))["finance"]
    response = staff(acme.admin).post("/admin/reviews/reviewtaskuserpermission/add/",
                                      {"content_object": str(task.pk), "user": str(acme.viewer.user.pk)})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["user"]
    assert errors == ["acme-viewer is a viewer: that role never decides review tasks, so the grant would do "
                      "nothing; change the role first."]
    assert not ReviewTaskUserPermission.objects.filter(content_object=task).exists()
    # The API refuses the same, naming the field.
    api = acme.admin.client.post(acme.url(f"reviews/{task.pk}/grants/"), {"user": "acme-agent"}, format="json")
    assert api.status_code == 400 and "user" in api.json()["error"]["fields"]


def test_a_member_added_without_a_password_gets_one_or_a_one_time_link(acme, globex):
    client = staff(acme.admin)
    added = client.post("/admin/tenants/membership/add/", {"tenant": str(acme.tenant.pk), "username": "newbie",
                                                          "role": "reviewer"})
    assert added.status_code == 302
    membership = Membership.objects.get(tenant=acme.tenant, user__username="newbie")
    sign_in = f"/admin/tenants/membership/{membership.pk}/sign-in/"
    assert "Password or sign-in link" in client.get(f"/admin/tenants/membership/{membership.pk}/change/").content.decode()

    short = client.post(sign_in, {"password1": "short", "password2": "short"})
    assert "too short" in short.content.decode()
    assert client.post(sign_in, {"password1": "a-long-enough-pw", "password2": "a-long-enough-pw"}).status_code == 200
    newbie = Client()
    assert newbie.login(username="newbie", password="a-long-enough-pw")
    assert newbie.get(QUEUE).status_code == 200  # into the admin, as a reviewer

    linked = client.post(sign_in, {"action": "link"})
    link = re.search(r'value="(http://testserver/accounts/reset/[^"]+)"', linked.content.decode()).group(1)
    path = link.removeprefix("http://testserver")
    stranger = Client()
    form = stranger.get(path, follow=True)
    assert form.status_code == 200 and "new_password1" in form.content.decode()
    done = stranger.post(form.redirect_chain[-1][0], {"new_password1": "chosen-by-me-123",
                                                      "new_password2": "chosen-by-me-123"})
    assert done.status_code == 302
    assert Client().login(username="newbie", password="chosen-by-me-123")
    # One time only: the link is spent with the password it set.
    assert "new_password1" not in Client().get(path, follow=True).content.decode()

    # Another tenant's admin cannot reach the page; nobody can set a password of someone
    # who also belongs to another tenant.
    assert staff(globex.admin).get(sign_in).status_code in (302, 404)
    Membership.objects.create(tenant=globex.tenant, user=membership.user, role="viewer")
    refused = client.get(sign_in).content.decode()
    assert "also belongs to another tenant" in refused and "Set password" not in refused


def test_each_finding_is_marked_where_it_sits_with_or_without_an_end():
    from reviews.admin import finding_span, highlighted

    text = "Preamble. The Supplier shall have\nunlimited liability. Fees are due <monthly>."
    match = text.index("unlimited")
    sentence = (text.index("The Supplier"), text.index("Fees") - 1)
    # As the analyser has it today: the match's start and the sentence's folded text.
    assert finding_span(text, {"start": match, "excerpt": "The Supplier shall have unlimited liability."}) == sentence
    # With an end, exactly that; a missing clause (-1) marks nothing.
    assert finding_span(text, {"start": match, "end": match + 9, "excerpt": "whatever"}) == (match, match + 9)
    assert finding_span(text, {"start": -1, "excerpt": ""}) is None
    html = highlighted(text, [{"start": match, "end": match + 9}, {"start": match + 10, "end": match + 19}])
    assert '<mark class="hitl-finding" data-findings="1" title="finding 1">unlimited</mark>' in html
    assert "&lt;monthly&gt;" in html  # the text is escaped


# --- Time on the queue, comments and reassign on the task page ------------------------------


def test_the_task_page_shows_where_the_task_stands_against_its_due_date(acme):
    from datetime import timedelta

    from django.utils import timezone

    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    html = staff(acme.reviewer).get(page(task)).content.decode()
    assert 'id="hitl-due-status"' in html and "on time" in html
    assert "Time on the queue" in html and "Reminder" in html and "Expiry" in html
    ReviewTask.objects.filter(pk=task.pk).update(due_at=timezone.now() - timedelta(minutes=5),
                                                 escalated_at=timezone.now())
    assert "overdue" in staff(acme.reviewer).get(page(task)).content.decode()
    queue = staff(acme.admin).get(QUEUE, {"show": "pending", "time": "overdue"})
    assert listed(queue) == [str(task.pk)]
    row = queue.content.decode()
    assert "hitl-overdue" in row and "escalated" in row
    assert listed(staff(acme.admin).get(QUEUE, {"show": "pending", "time": "expired"})) == []


def test_a_reviewer_comments_from_the_task_page_and_a_viewer_cannot(acme, globex):
    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    reviewer = staff(acme.reviewer)
    assert 'id="hitl-comment-form"' in reviewer.get(page(task)).content.decode()
    response = post(reviewer, page(task), {"action": "comment", "note": "Checking the cap with the client."})
    assert response.status_code == 302
    html = reviewer.get(page(task)).content.decode()
    assert "Checking the cap with the client." in html and "acme-reviewer" in html
    assert AuditRecord.objects.filter(action="review.commented", actor_username="acme-reviewer").count() == 1

    viewer = staff(acme.viewer)
    assert 'id="hitl-comment-form"' not in viewer.get(page(task)).content.decode()
    refused = post(viewer, page(task), {"action": "comment", "note": "sneaky"})
    assert refused.status_code == 200
    assert [t for t in texts(refused) if t[0] == "error"]
    assert "sneaky" not in reviewer.get(page(task)).content.decode()
    # Another tenant's admin does not reach the task at all.
    assert staff(globex.admin).get(page(task)).status_code in (302, 404)


def test_a_tenant_admin_reassigns_from_the_task_page_to_a_member_who_may_decide(acme):
    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    admin_client = staff(acme.admin)
    html = admin_client.get(page(task)).content.decode()
    assert 'id="hitl-reassign-form"' in html
    assert re.search(r'<option value="acme-viewer" disabled', html)
    refused = post(admin_client, page(task), {"action": "reassign", "assignee": "acme-viewer"})
    assert refused.status_code == 200 and [t for t in texts(refused) if t[0] == "error"]
    response = post(admin_client, page(task), {"action": "reassign", "assignee": "acme-reviewer2"})
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.claimed_by.username == "acme-reviewer2"
    assert ReviewTaskUserPermission.objects.filter(content_object=task, user__username="acme-reviewer2").exists()
    # Reviewers do not get the reassign form.
    assert 'id="hitl-reassign-form"' not in staff(acme.reviewer).get(page(task)).content.decode()
