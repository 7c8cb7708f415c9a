"""Who may resume which task, under the permission model: each kind of review is routed
to a team (finance -> finance approvers, legal -> reviewers and seniors, critical
sign-off -> senior reviewers, never the first signer), tenant admins may act on any
task, and a membership change through the API takes effect on the next request."""

from __future__ import annotations

import pytest
from django.test import Client, TestCase
from rest_framework.test import APIClient

from contracts.models import Contract
from reviews.models import ReviewTask
from tenants.models import AuditRecord, Membership, Role
from tenants.services import membership_set
from tests.api_flow import pending, resume, submit
from tests.factories import CRITICAL_RISK_TEXT, HIGH_RISK_TEXT, LARGE_PAYMENT_TEXT, member_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def assert_refused(response, reason: str | None = None) -> None:
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    assert error.get("reason") == reason


def status_of(task: ReviewTask) -> str:
    task.refresh_from_db()
    return task.status


def member_patch(world, member, body: dict):
    membership = Membership.objects.get(tenant=world.tenant, user=member.user)
    return world.admin.client.patch(world.url(f"members/{membership.pk}/"), body, format="json")


def signoff_after_legal_by(world, first_signer) -> tuple[Contract, ReviewTask]:
    contract = submit(world, CRITICAL_RISK_TEXT)
    assert resume(first_signer, world, pending(contract)["legal"]).status_code == 202
    tasks = pending(contract)
    assert set(tasks) == {"signoff"}
    return contract, tasks["signoff"]


# --- Finance ----------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["reviewer", "senior"])
def test_a_finance_task_is_refused_outside_the_finance_team(acme, who):
    finance = pending(submit(acme, LARGE_PAYMENT_TEXT))["finance"]
    assert_refused(resume(getattr(acme, who), acme, finance))
    assert status_of(finance) == "pending"


def test_a_finance_task_is_resumed_by_a_finance_approver(acme):
    contract = submit(acme, LARGE_PAYMENT_TEXT)
    assert resume(acme.reviewer2, acme, pending(contract)["finance"]).status_code == 202
    contract.refresh_from_db()
    assert contract.status == "approved"


# --- Legal ------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["reviewer", "reviewer2", "senior"])
def test_a_legal_task_is_resumed_by_any_reviewer_or_senior(acme, who):
    contract = submit(acme, HIGH_RISK_TEXT)
    response = resume(getattr(acme, who), acme, pending(contract)["legal"], {"decision": "reject"})
    assert response.status_code == 202, response.content
    contract.refresh_from_db()
    assert contract.status == "rejected"


@pytest.mark.parametrize("who", ["viewer", "agent"])
def test_a_legal_task_is_refused_to_roles_that_do_not_decide(acme, who):
    legal = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    assert_refused(resume(getattr(acme, who), acme, legal))
    assert status_of(legal) == "pending"


# --- Critical sign-off: senior reviewers, four eyes -----------------------------------------


@pytest.mark.parametrize("who", ["reviewer", "reviewer2"])
def test_the_critical_signoff_is_refused_to_a_plain_reviewer(acme, who):
    _, signoff = signoff_after_legal_by(acme, acme.senior)
    assert_refused(resume(getattr(acme, who), acme, signoff))  # not routed to them: no reason given
    assert status_of(signoff) == "pending"


def test_the_critical_signoff_is_given_by_a_senior_who_did_not_sign_first(acme):
    contract, signoff = signoff_after_legal_by(acme, acme.reviewer)
    assert resume(acme.senior, acme, signoff).status_code == 202
    contract.refresh_from_db()
    assert contract.status == "approved"
    assert [(h["kind"], h["decided_by_username"]) for h in contract.decision_history] == [
        ("legal", "acme-reviewer"), ("signoff", "acme-senior"),
    ]


@pytest.mark.parametrize("first", ["senior", "admin"])
def test_the_first_signer_never_gives_the_critical_signoff(acme, first):
    _, signoff = signoff_after_legal_by(acme, getattr(acme, first))
    assert_refused(resume(getattr(acme, first), acme, signoff), reason="four_eyes")
    assert status_of(signoff) == "pending"


def test_a_second_senior_may_sign_off_after_the_first_senior(acme):
    _, key = member_create(acme.tenant, Role.SENIOR_REVIEWER, username="acme-senior2")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    contract, signoff = signoff_after_legal_by(acme, acme.senior)
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(acme.url(f"reviews/{signoff.pk}/resume/"), {"decision": "approve"}, format="json")
    assert response.status_code == 202, response.content
    contract.refresh_from_db()
    assert contract.status == "approved"


def test_with_signoff_by_admins_a_senior_may_not_sign_off(acme):
    acme.tenant.signoff_role = Role.ADMIN
    acme.tenant.save(update_fields=["signoff_role"])
    contract, signoff = signoff_after_legal_by(acme, acme.reviewer)
    assert_refused(resume(acme.senior, acme, signoff))
    assert resume(acme.admin, acme, signoff).status_code == 202
    contract.refresh_from_db()
    assert contract.status == "approved"


# --- Tenant admins act on any task ------------------------------------------------------------


def test_a_tenant_admin_may_resume_every_kind_of_task(acme):
    finance = submit(acme, LARGE_PAYMENT_TEXT)
    assert resume(acme.admin, acme, pending(finance)["finance"]).status_code == 202
    legal = submit(acme, HIGH_RISK_TEXT)
    assert resume(acme.admin, acme, pending(legal)["legal"]).status_code == 202
    critical, signoff = signoff_after_legal_by(acme, acme.senior)
    assert resume(acme.admin, acme, signoff).status_code == 202
    for contract in (finance, legal, critical):
        contract.refresh_from_db()
        assert contract.status == "approved"


# --- Membership changes take effect on the next request -----------------------------------------


def test_demoting_a_reviewer_to_viewer_stops_them_on_the_next_request(acme):
    legal = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    response = member_patch(acme, acme.reviewer, {"role": "viewer"})
    assert response.status_code == 200, response.content
    assert response.json()["role"] == "viewer"

    assert_refused(resume(acme.reviewer, acme, legal))
    assert status_of(legal) == "pending"
    # Still a member: may read the queue.
    assert acme.reviewer.client.get(acme.url("reviews/")).status_code == 200


def test_promoting_a_viewer_to_reviewer_lets_them_resume_legal_tasks(acme):
    contract = submit(acme, HIGH_RISK_TEXT)
    legal = pending(contract)["legal"]
    assert_refused(resume(acme.viewer, acme, legal))

    assert member_patch(acme, acme.viewer, {"role": "reviewer"}).status_code == 200

    assert resume(acme.viewer, acme, legal).status_code == 202
    contract.refresh_from_db()
    assert contract.status == "approved"


def test_making_a_reviewer_a_finance_approver_lets_them_resume_finance_tasks(acme):
    finance = pending(submit(acme, LARGE_PAYMENT_TEXT))["finance"]
    assert_refused(resume(acme.reviewer, acme, finance))

    response = member_patch(acme, acme.reviewer, {"finance_approver": True})
    assert response.status_code == 200
    assert response.json()["finance_approver"] is True

    assert resume(acme.reviewer, acme, finance).status_code == 202


def test_removing_the_finance_flag_stops_finance_tasks_on_the_next_request(acme):
    finance = pending(submit(acme, LARGE_PAYMENT_TEXT))["finance"]
    assert member_patch(acme, acme.reviewer2, {"finance_approver": False}).status_code == 200
    assert_refused(resume(acme.reviewer2, acme, finance))
    assert status_of(finance) == "pending"


def test_demoting_a_senior_to_reviewer_stops_their_critical_signoffs(acme):
    _, signoff = signoff_after_legal_by(acme, acme.reviewer)
    assert member_patch(acme, acme.senior, {"role": "reviewer"}).status_code == 200
    assert_refused(resume(acme.senior, acme, signoff))
    assert status_of(signoff) == "pending"


def test_a_role_change_in_one_tenant_leaves_the_other_tenant_alone(acme, globex):
    # The same person in both tenants: a reviewer at acme and at globex.
    person = acme.reviewer.user
    membership_set(tenant=globex.tenant, user=person, role=Role.REVIEWER)
    globex_legal = pending(submit(globex, HIGH_RISK_TEXT))["legal"]

    assert member_patch(acme, acme.reviewer, {"role": "viewer"}).status_code == 200

    assert resume(acme.reviewer, globex, globex_legal).status_code == 202


# --- The last admin stays ---------------------------------------------------------------------


def test_the_last_admin_cannot_be_demoted_or_removed(acme):
    admin_membership = Membership.objects.get(tenant=acme.tenant, user=acme.admin.user)
    audits = AuditRecord.objects.count()

    demoted = member_patch(acme, acme.admin, {"role": "reviewer"})
    assert demoted.status_code == 409, demoted.content
    assert demoted.json()["error"]["code"] == "conflict"
    assert "role" in demoted.json()["error"]["fields"]

    removed = acme.admin.client.delete(acme.url(f"members/{admin_membership.pk}/"))
    assert removed.status_code == 409, removed.content
    assert removed.json()["error"]["code"] == "conflict"

    admin_membership.refresh_from_db()
    assert admin_membership.role == Role.ADMIN
    assert AuditRecord.objects.count() == audits
    assert acme.admin.client.get(acme.url("audit/")).status_code == 200  # still the admin


def test_an_admin_may_step_down_once_another_admin_exists(acme):
    assert member_patch(acme, acme.senior, {"role": "admin"}).status_code == 200
    response = member_patch(acme, acme.admin, {"role": "reviewer"})
    assert response.status_code == 200, response.content
    assert acme.admin.client.get(acme.url("audit/")).status_code == 403  # on the next request
    assert member_patch(acme, acme.senior, {"role": "viewer"}).status_code == 403  # acme-admin is no admin now
    # And the senior-turned-admin is the last one.
    senior = Membership.objects.get(tenant=acme.tenant, user=acme.senior.user)
    refused = acme.senior.client.patch(acme.url(f"members/{senior.pk}/"), {"role": "viewer"}, format="json")
    assert refused.status_code == 409


def test_the_last_admin_cannot_be_demoted_or_removed_through_the_django_admin_either(acme):
    acme.admin.user.is_staff = True
    acme.admin.user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(acme.admin.user)
    membership = Membership.objects.get(tenant=acme.tenant, user=acme.admin.user)
    audits = AuditRecord.objects.count()

    client.post(f"/admin/tenants/membership/{membership.pk}/change/", {"role": "reviewer", "finance_approver": ""})
    client.post(f"/admin/tenants/membership/{membership.pk}/delete/", {"post": "yes"})
    client.post("/admin/tenants/membership/", {"action": "delete_selected", "select_across": "0", "index": "0",
                                               "_selected_action": [str(membership.pk)], "post": "yes"})

    membership.refresh_from_db()
    assert membership.role == Role.ADMIN
    assert AuditRecord.objects.count() == audits
    assert acme.admin.client.get(acme.url("audit/")).status_code == 200
