"""Guardian object permissions decide who may resume a review task, through every
interface (API, admin change form, admin bulk action): grants and revokes by a tenant
admin take effect on the next request, a thread-level grant covers tasks created after
it, another tenant's users cannot be granted anything, and every change is audited."""

from __future__ import annotations

import pytest
from django.test import Client, TestCase

from config.api_errors import InvalidInput
from contracts.models import Contract, ContractUserPermission
from reviews.models import ReviewTask, ReviewTaskUserPermission
from reviews.services import resume_permission_set
from tenants.models import AuditRecord
from tenants.services import tenant_group_get
from tests.api_flow import pending, resume, submit
from tests.factories import CRITICAL_RISK_TEXT, HIGH_RISK_LARGE_PAYMENT_TEXT, LARGE_PAYMENT_TEXT

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def grant(world, path: str, body: dict, *, revoke: bool = False):
    url = world.url(f"{path}grants/revoke/" if revoke else f"{path}grants/")
    return world.admin.client.post(url, body, format="json")


def staff_client(member) -> Client:
    member.user.is_staff = True  # the admin site needs it; the tenant role decides the rest
    member.user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(member.user)
    return client


def change_url(task: ReviewTask) -> str:
    return f"/admin/reviews/reviewtask/{task.pk}/change/"


def status_of(task: ReviewTask) -> str:
    task.refresh_from_db()
    return task.status


def decided(contract: Contract) -> int:
    return AuditRecord.objects.filter(tenant_id=contract.tenant_id, action="review.resolved").count()


# --- Without the permission: refused everywhere -------------------------------------------


def test_reviewer_outside_the_finance_team_cannot_resume_through_the_api(acme):
    contract = submit(acme, LARGE_PAYMENT_TEXT)
    finance = pending(contract)["finance"]

    response = resume(acme.reviewer, acme, finance)

    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "forbidden"
    assert status_of(finance) == "pending"
    assert decided(contract) == 0


def test_reviewer_outside_the_finance_team_cannot_decide_in_the_admin(acme):
    contract = submit(acme, LARGE_PAYMENT_TEXT)
    finance = pending(contract)["finance"]
    client = staff_client(acme.reviewer)

    form = client.get(change_url(finance))
    assert form.status_code == 200  # may look at it...
    html = form.content.decode()
    assert contract.title in html
    assert 'name="decision"' not in html  # ...but gets no decision form

    with TestCase.captureOnCommitCallbacks(execute=True):
        posted = client.post(change_url(finance), {"decision": "approve", "amendments": "", "comment": ""})
    assert posted.status_code == 403
    assert status_of(finance) == "pending"
    assert decided(contract) == 0


def test_admin_bulk_approve_skips_tasks_the_reviewer_may_not_resume(acme):
    finance = pending(submit(acme, LARGE_PAYMENT_TEXT))["finance"]
    legal = pending(submit(acme, HIGH_RISK_LARGE_PAYMENT_TEXT))["legal"]
    client = staff_client(acme.reviewer)

    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post("/admin/reviews/reviewtask/", {
            "action": "approve_selected", "select_across": "0", "post": "yes",
            "_selected_action": [str(finance.pk), str(legal.pk)],
        })

    assert response.status_code == 302
    assert status_of(finance) == "pending"  # not the reviewer's to decide
    assert status_of(legal) == "resolved"  # routed to the reviewers' team: decided
    assert legal.decided_by_id == acme.reviewer.user.pk


# --- Granting and revoking on one task ------------------------------------------------------


@pytest.mark.parametrize("via", ["api", "service"])
def test_a_grant_on_the_task_lets_the_reviewer_resume_it(acme, via):
    contract = submit(acme, LARGE_PAYMENT_TEXT)
    finance = pending(contract)["finance"]
    assert resume(acme.reviewer, acme, finance).status_code == 403

    if via == "api":
        response = grant(acme, f"reviews/{finance.pk}/", {"user": acme.reviewer.user.username})
        assert response.status_code == 200, response.content
        assert response.json() == {"users": ["acme-reviewer"], "teams": ["finance"]}
    else:
        resume_permission_set(tenant=acme.tenant, target=finance, grant=True, actor=acme.admin.user, via="command",
                              user=acme.reviewer.user)

    response = resume(acme.reviewer, acme, finance)
    assert response.status_code == 202, response.content
    finance.refresh_from_db()
    assert (finance.status, finance.decided_by_id) == ("resolved", acme.reviewer.user.pk)
    contract.refresh_from_db()
    assert contract.status == "approved"


def test_after_a_grant_the_admin_change_form_offers_the_decision(acme):
    finance = pending(submit(acme, LARGE_PAYMENT_TEXT))["finance"]
    client = staff_client(acme.reviewer)
    assert 'name="decision"' not in client.get(change_url(finance)).content.decode()

    assert grant(acme, f"reviews/{finance.pk}/", {"user": "acme-reviewer"}).status_code == 200

    assert 'name="decision"' in client.get(change_url(finance)).content.decode()
    with TestCase.captureOnCommitCallbacks(execute=True):
        posted = client.post(change_url(finance), {"decision": "reject", "amendments": "", "comment": "too much"})
    assert posted.status_code == 302
    finance.refresh_from_db()
    assert (finance.status, finance.decision["decision"]) == ("resolved", "reject")


def test_a_revoke_takes_effect_on_the_next_request(acme):
    finance = pending(submit(acme, LARGE_PAYMENT_TEXT))["finance"]
    assert grant(acme, f"reviews/{finance.pk}/", {"user": "acme-reviewer"}).status_code == 200
    detail = acme.reviewer.client.get(acme.url(f"reviews/{finance.pk}/"))
    assert detail.json()["can_resume"] is True

    revoked = grant(acme, f"reviews/{finance.pk}/", {"user": "acme-reviewer"}, revoke=True)
    assert revoked.status_code == 200, revoked.content
    assert revoked.json() == {"users": [], "teams": ["finance"]}

    assert acme.reviewer.client.get(acme.url(f"reviews/{finance.pk}/")).json()["can_resume"] is False
    assert resume(acme.reviewer, acme, finance).status_code == 403
    client = staff_client(acme.reviewer)
    assert 'name="decision"' not in client.get(change_url(finance)).content.decode()
    assert client.post(change_url(finance), {"decision": "approve"}).status_code == 403
    assert status_of(finance) == "pending"
    assert not ReviewTaskUserPermission.objects.filter(content_object=finance).exists()


def test_revoking_the_team_grant_shuts_out_the_whole_team(acme):
    finance = pending(submit(acme, LARGE_PAYMENT_TEXT))["finance"]
    response = grant(acme, f"reviews/{finance.pk}/", {"team": "finance"}, revoke=True)
    assert response.json() == {"users": [], "teams": []}

    assert resume(acme.reviewer2, acme, finance).status_code == 403
    assert status_of(finance) == "pending"
    assert resume(acme.admin, acme, finance).status_code == 202  # tenant admins may act on any task


# --- Thread-level grants ----------------------------------------------------------------------


def test_a_thread_grant_covers_every_task_of_the_contract_and_no_other(acme):
    contract = submit(acme, HIGH_RISK_LARGE_PAYMENT_TEXT)
    other = submit(acme, LARGE_PAYMENT_TEXT, title="Other order")

    response = grant(acme, f"contracts/{contract.pk}/", {"user": "acme-reviewer"})
    assert response.status_code == 200, response.content
    assert response.json() == {"users": ["acme-reviewer"], "teams": []}

    assert resume(acme.reviewer, acme, pending(other)["finance"]).status_code == 403  # not this thread
    assert resume(acme.reviewer, acme, pending(contract)["finance"]).status_code == 202
    assert resume(acme.reviewer, acme, pending(contract)["legal"]).status_code == 202
    contract.refresh_from_db()
    assert contract.status == "approved"


def test_a_thread_grant_covers_tasks_created_after_it(acme):
    contract = submit(acme, CRITICAL_RISK_TEXT)
    assert set(pending(contract)) == {"legal"}
    # acme-reviewer is a plain reviewer: the critical sign-off is not routed to them.
    assert grant(acme, f"contracts/{contract.pk}/", {"user": "acme-reviewer"}).status_code == 200

    assert resume(acme.senior, acme, pending(contract)["legal"]).status_code == 202
    signoff = pending(contract)["signoff"]  # created by the run that followed the grant
    assert resume(acme.reviewer2, acme, signoff).status_code == 403  # control: no grant
    response = resume(acme.reviewer, acme, signoff)
    assert response.status_code == 202, response.content
    contract.refresh_from_db()
    assert contract.status == "approved"
    assert [(h["kind"], h["decided_by_username"]) for h in contract.decision_history] == [
        ("legal", "acme-senior"), ("signoff", "acme-reviewer"),
    ]


def test_a_thread_revoke_takes_effect_on_the_next_request(acme):
    contract = submit(acme, LARGE_PAYMENT_TEXT)
    assert grant(acme, f"contracts/{contract.pk}/", {"user": "acme-reviewer"}).status_code == 200
    revoked = grant(acme, f"contracts/{contract.pk}/", {"user": "acme-reviewer"}, revoke=True)
    assert revoked.status_code == 200
    assert revoked.json() == {"users": [], "teams": []}

    assert resume(acme.reviewer, acme, pending(contract)["finance"]).status_code == 403
    assert not ContractUserPermission.objects.filter(content_object=contract).exists()


# --- Grants never reach across tenants ------------------------------------------------------


@pytest.mark.parametrize("target", ["task", "thread"])
@pytest.mark.parametrize("revoke", [False, True], ids=["grant", "revoke"])
def test_a_grant_to_a_user_of_another_tenant_is_refused(acme, globex, target, revoke):
    contract = submit(acme, LARGE_PAYMENT_TEXT)
    path = f"reviews/{pending(contract)['finance'].pk}/" if target == "task" else f"contracts/{contract.pk}/"
    audits = AuditRecord.objects.count()

    response = grant(acme, path, {"user": globex.reviewer2.user.username}, revoke=revoke)

    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == ["user"]
    assert not ReviewTaskUserPermission.objects.filter(user=globex.reviewer2.user).exists()
    assert not ContractUserPermission.objects.filter(user=globex.reviewer2.user).exists()
    assert AuditRecord.objects.count() == audits
    assert resume(globex.reviewer2, globex, pending(contract)["finance"]).status_code == 404


@pytest.mark.parametrize("holder", ["user", "group"])
def test_the_grant_service_refuses_a_holder_of_another_tenant(acme, globex, holder):
    finance = pending(submit(acme, LARGE_PAYMENT_TEXT))["finance"]
    outsider = {"user": globex.reviewer.user} if holder == "user" else {
        "group": tenant_group_get(tenant=globex.tenant, team="reviewers")}
    with pytest.raises(InvalidInput) as refused:
        resume_permission_set(tenant=acme.tenant, target=finance, grant=True, actor=acme.admin.user, via="command",
                              **outsider)
    assert holder in refused.value.fields


# --- Every grant and revoke is audited -----------------------------------------------------


def audit_since(world, since: int) -> list[tuple]:
    """The tenant's audit records newer than the first `since`, oldest first, as the API lists them."""
    response = world.admin.client.get(world.url("audit/"))
    assert response.status_code == 200
    records = response.json()["results"][: AuditRecord.objects.filter(tenant=world.tenant).count() - since]
    return [(r["actor"], r["action"], r["interface"], r["target_id"], r["data"].get("user"), r["data"].get("group"))
            for r in reversed(records)]


def test_every_api_grant_and_revoke_is_in_the_audit_list(acme):
    contract = submit(acme, HIGH_RISK_LARGE_PAYMENT_TEXT)
    finance = pending(contract)["finance"]
    since = AuditRecord.objects.filter(tenant=acme.tenant).count()

    assert grant(acme, f"reviews/{finance.pk}/", {"user": "acme-reviewer"}).status_code == 200
    assert grant(acme, f"reviews/{finance.pk}/", {"user": "acme-reviewer"}, revoke=True).status_code == 200
    assert grant(acme, f"contracts/{contract.pk}/", {"team": "finance"}).status_code == 200
    assert grant(acme, f"contracts/{contract.pk}/", {"team": "finance"}, revoke=True).status_code == 200

    finance_team = f"{acme.tenant.pk}:finance"
    assert audit_since(acme, since) == [
        ("acme-admin", "grant.task", "api", str(finance.pk), "acme-reviewer", None),
        ("acme-admin", "revoke.task", "api", str(finance.pk), "acme-reviewer", None),
        ("acme-admin", "grant.thread", "api", str(contract.pk), None, finance_team),
        ("acme-admin", "revoke.thread", "api", str(contract.pk), None, finance_team),
    ]
    assert acme.reviewer.client.get(acme.url("audit/")).status_code == 403  # the audit list is for admins


def test_a_revoke_in_the_admin_is_audited_with_interface_admin(acme):
    contract = submit(acme, HIGH_RISK_LARGE_PAYMENT_TEXT)
    finance = pending(contract)["finance"]
    resume_permission_set(tenant=acme.tenant, target=finance, grant=True, actor=acme.admin.user, via="command",
                          user=acme.senior.user)
    row = ReviewTaskUserPermission.objects.get(content_object=finance, user=acme.senior.user)
    since = AuditRecord.objects.filter(tenant=acme.tenant).count()

    client = staff_client(acme.admin)
    deleted = client.post(f"/admin/reviews/reviewtaskuserpermission/{row.pk}/delete/", {"post": "yes"})

    assert deleted.status_code == 302
    assert not ReviewTaskUserPermission.objects.filter(pk=row.pk).exists()
    assert audit_since(acme, since) == [("acme-admin", "revoke.task", "admin", str(finance.pk), "acme-senior", None)]
    assert resume(acme.senior, acme, finance).status_code == 403


@pytest.mark.parametrize("model", ["reviews/reviewtaskuserpermission", "contracts/contractuserpermission"])
def test_a_grant_in_the_admin_is_audited_with_interface_admin(acme, model):
    contract = submit(acme, HIGH_RISK_LARGE_PAYMENT_TEXT)
    finance = pending(contract)["finance"]
    target = finance if model.startswith("reviews") else contract
    since = AuditRecord.objects.filter(tenant=acme.tenant).count()

    added = staff_client(acme.admin).post(f"/admin/{model}/add/",
                                          {"content_object": str(target.pk), "user": str(acme.reviewer.user.pk)})

    assert added.status_code == 302
    action = "grant.task" if target is finance else "grant.thread"
    assert audit_since(acme, since) == [("acme-admin", action, "admin", str(target.pk), "acme-reviewer", None)]
    assert resume(acme.reviewer, acme, finance).status_code == 202
