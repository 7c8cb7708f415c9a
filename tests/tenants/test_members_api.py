"""Tenant admins manage their own tenant's members through the API: list, add, change,
remove, each audited; another tenant's admin sees none of it (404)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import TestCase
from rest_framework.test import APIClient

from contracts.models import ContractUserPermission
from contracts.services import contract_submit
from reviews.models import ReviewTask, ReviewTaskUserPermission
from reviews.services import resume_permission_set
from tenants.models import AuditRecord, Membership, TenantGroup
from tenants.services import api_token_create, membership_set
from tests.factories import HIGH_RISK_TEXT, UserFactory

pytestmark = pytest.mark.django_db

NOT_FOUND_BODY = {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def membership_of(world, member) -> Membership:
    return Membership.objects.get(tenant=world.tenant, user=member.user)


def teams_of(world, user) -> set[str]:
    return set(TenantGroup.objects.filter(tenant=world.tenant, group__user=user).values_list("team", flat=True))


def last_audit(world) -> AuditRecord:
    return AuditRecord.objects.filter(tenant=world.tenant).order_by("-id").first()


def memberships_snapshot() -> list:
    return sorted(Membership.objects.values_list("pk", "tenant_id", "user_id", "role", "finance_approver"), key=repr)


def test_the_admin_lists_exactly_the_tenants_members(acme, globex):
    response = acme.admin.client.get(acme.url("members/"))
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(r["username"], r["role"], r["finance_approver"]) for r in rows] == [
        ("acme-admin", "admin", False),
        ("acme-agent", "agent", False),
        ("acme-reviewer", "reviewer", False),
        ("acme-reviewer2", "reviewer", True),
        ("acme-senior", "senior_reviewer", False),
        ("acme-viewer", "viewer", False),
    ]
    assert {r["id"] for r in rows} == set(Membership.objects.filter(tenant=acme.tenant).values_list("pk", flat=True))


def test_the_admin_reads_one_member(acme):
    membership = membership_of(acme, acme.reviewer2)
    response = acme.admin.client.get(acme.url(f"members/{membership.pk}/"))
    assert response.status_code == 200
    assert response.json() | {"created_at": None} == {
        "id": membership.pk, "username": "acme-reviewer2", "role": "reviewer", "finance_approver": True,
        "created_at": None,
    }


def test_adding_a_new_person_creates_an_account_a_membership_its_teams_and_an_audit_record(acme):
    body = {"username": "acme-carol", "role": "reviewer", "finance_approver": True}
    response = acme.admin.client.post(acme.url("members/"), body, format="json")

    assert response.status_code == 201, response.content
    assert (response.json()["username"], response.json()["role"], response.json()["finance_approver"]) == (
        "acme-carol", "reviewer", True)
    carol = get_user_model().objects.get(username="acme-carol")
    assert not carol.has_usable_password()
    membership = Membership.objects.get(tenant=acme.tenant, user=carol)
    assert response.json()["id"] == membership.pk
    assert teams_of(acme, carol) == {"reviewers", "finance"}
    record = last_audit(acme)
    assert (record.action, record.actor_username, record.interface, record.target_id) == (
        "membership.created", "acme-admin", "api", str(membership.pk))
    assert record.data == {"user": "acme-carol", "role": "reviewer", "finance_approver": True}


def test_adding_an_existing_member_is_a_conflict_and_changes_nothing(acme):
    before, audits = memberships_snapshot(), AuditRecord.objects.count()
    response = acme.admin.client.post(acme.url("members/"), {"username": "acme-viewer", "role": "admin"}, format="json")

    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "conflict"
    assert "username" in response.json()["error"]["fields"]
    assert memberships_snapshot() == before
    assert AuditRecord.objects.count() == audits
    assert membership_of(acme, acme.viewer).role == "viewer"


def test_an_invalid_role_is_a_400_naming_the_field(acme):
    before = memberships_snapshot()
    response = acme.admin.client.post(acme.url("members/"), {"username": "acme-dave", "role": "owner"}, format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["role"]
    assert memberships_snapshot() == before
    assert not get_user_model().objects.filter(username="acme-dave").exists()


def test_changing_a_member_updates_role_teams_and_audit(acme):
    membership = membership_of(acme, acme.reviewer)
    response = acme.admin.client.patch(acme.url(f"members/{membership.pk}/"),
                                       {"role": "senior_reviewer", "finance_approver": True}, format="json")

    assert response.status_code == 200, response.content
    assert (response.json()["role"], response.json()["finance_approver"]) == ("senior_reviewer", True)
    membership.refresh_from_db()
    assert (membership.role, membership.finance_approver) == ("senior_reviewer", True)
    assert teams_of(acme, acme.reviewer.user) == {"reviewers", "senior", "finance"}
    record = last_audit(acme)
    assert (record.action, record.actor_username, record.interface, record.target_id) == (
        "membership.changed", "acme-admin", "api", str(membership.pk))
    assert record.data == {"user": "acme-reviewer", "role": "senior_reviewer", "finance_approver": True}


def test_a_partial_change_keeps_the_other_field(acme):
    membership = membership_of(acme, acme.reviewer2)
    response = acme.admin.client.patch(acme.url(f"members/{membership.pk}/"), {"role": "senior_reviewer"},
                                       format="json")
    assert response.status_code == 200
    membership.refresh_from_db()
    assert (membership.role, membership.finance_approver) == ("senior_reviewer", True)


def test_removing_a_member_takes_their_teams_grants_and_access_and_is_audited(acme):
    with TestCase.captureOnCommitCallbacks(execute=True):
        contract = contract_submit(tenant=acme.tenant, submitted_by=acme.agent.user, title="MSA", text=HIGH_RISK_TEXT)
    task = ReviewTask.objects.get(contract=contract)
    for target in (task, contract):
        resume_permission_set(tenant=acme.tenant, target=target, grant=True, actor=acme.admin.user, via="api",
                              user=acme.reviewer.user)
    membership = membership_of(acme, acme.reviewer)

    response = acme.admin.client.delete(acme.url(f"members/{membership.pk}/"))

    assert response.status_code == 204, response.content
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert teams_of(acme, acme.reviewer.user) == set()
    assert not ReviewTaskUserPermission.objects.filter(user=acme.reviewer.user).exists()
    assert not ContractUserPermission.objects.filter(user=acme.reviewer.user).exists()
    record = last_audit(acme)
    assert (record.action, record.actor_username, record.interface, record.target_id) == (
        "membership.removed", "acme-admin", "api", str(membership.pk))
    assert record.data == {"user": "acme-reviewer", "role": "reviewer"}
    # On the next request the former member is a stranger: 404, like any non-member.
    gone = acme.reviewer.client.get(acme.url("reviews/"))
    assert gone.status_code == 404 and gone.json() == NOT_FOUND_BODY
    assert acme.reviewer.client.post(acme.url(f"reviews/{task.pk}/resume/"), {"decision": "approve"},
                                     format="json").status_code == 404
    task.refresh_from_db()
    assert task.status == "pending"


@pytest.mark.parametrize("who", ["senior", "reviewer", "viewer", "agent"])
def test_only_the_admin_manages_members(acme, who):
    member = getattr(acme, who)
    target = membership_of(acme, acme.viewer)
    before, audits = memberships_snapshot(), AuditRecord.objects.count()
    calls = [
        member.client.get(acme.url("members/")),
        member.client.post(acme.url("members/"), {"username": "acme-eve", "role": "admin"}, format="json"),
        member.client.get(acme.url(f"members/{target.pk}/")),
        member.client.patch(acme.url(f"members/{target.pk}/"), {"role": "admin"}, format="json"),
        member.client.delete(acme.url(f"members/{target.pk}/")),
    ]
    assert [c.status_code for c in calls] == [403] * 5
    assert memberships_snapshot() == before
    assert AuditRecord.objects.count() == audits


# --- Another tenant's admin ---------------------------------------------------------------------


def test_a_globex_admin_cannot_see_or_change_acme_memberships(acme, globex):
    target = membership_of(acme, acme.reviewer)
    before, audits = memberships_snapshot(), AuditRecord.objects.count()
    client = globex.admin.client
    calls = {
        "list via acme": client.get(acme.url("members/")),
        "add via acme": client.post(acme.url("members/"), {"username": "globex-mole", "role": "admin"}, format="json"),
        "read via acme": client.get(acme.url(f"members/{target.pk}/")),
        "read via globex": client.get(globex.url(f"members/{target.pk}/")),
        "change via acme": client.patch(acme.url(f"members/{target.pk}/"), {"role": "viewer"}, format="json"),
        "change via globex": client.patch(globex.url(f"members/{target.pk}/"), {"role": "viewer"}, format="json"),
        "remove via acme": client.delete(acme.url(f"members/{target.pk}/")),
        "remove via globex": client.delete(globex.url(f"members/{target.pk}/")),
    }
    missing = client.get(globex.url("members/999999999/"))
    assert missing.status_code == 404
    for label, response in calls.items():
        assert response.status_code == 404, f"{label}: {response.status_code}"
        assert response.content == missing.content, label
    assert memberships_snapshot() == before
    assert AuditRecord.objects.count() == audits
    # And globex's own list holds only globex.
    usernames = {r["username"] for r in client.get(globex.url("members/")).json()["results"]}
    assert usernames and all(name.startswith("globex-") for name in usernames)


def test_membership_audit_records_stay_in_their_tenant(acme, globex):
    assert acme.admin.client.post(acme.url("members/"), {"username": "acme-frank", "role": "viewer"},
                                  format="json").status_code == 201
    globex_audit = globex.admin.client.get(globex.url("audit/")).json()["results"]
    assert "acme-frank" not in str(globex_audit)
    acme_audit = acme.admin.client.get(acme.url("audit/")).json()["results"]
    assert acme_audit[0]["action"] == "membership.created" and acme_audit[0]["data"]["user"] == "acme-frank"
    assert all("globex" not in str(record) for record in acme_audit)


# --- Tokens of members (agents' tokens are managed by the tenant admin) ---------------------


@pytest.fixture
def dual(acme, globex):
    """An agent of acme that globex also uses, with the token it uses at globex."""
    membership_set(tenant=globex.tenant, user=acme.agent.user, role="agent")
    token, key = api_token_create(user=acme.agent.user, name="globex-prod")
    return token, key


def test_tokens_of_another_tenants_member_are_a_404(acme, globex):
    globex_agent = Membership.objects.get(tenant=globex.tenant, user=globex.agent.user)
    token = globex.agent.user.api_tokens.get()
    missing = acme.admin.client.get(acme.url("members/999999999/tokens/"))
    calls = [
        acme.admin.client.get(acme.url(f"members/{globex_agent.pk}/tokens/")),
        acme.admin.client.post(acme.url(f"members/{globex_agent.pk}/tokens/"), {"name": "mole"}, format="json"),
        acme.admin.client.post(acme.url(f"members/{globex_agent.pk}/tokens/{token.pk}/revoke/")),
    ]
    assert [c.status_code for c in calls] == [404, 404, 404]
    assert all(c.content == missing.content for c in calls)
    token.refresh_from_db()
    assert token.revoked_at is None
    assert globex.agent.client.get(globex.url("contracts/")).status_code == 200


def test_an_admin_cannot_revoke_the_token_a_member_uses_in_another_tenant(acme, globex, dual):
    token, key = dual
    membership = Membership.objects.get(tenant=acme.tenant, user=acme.agent.user)

    response = acme.admin.client.post(acme.url(f"members/{membership.pk}/tokens/{token.pk}/revoke/"))

    assert response.status_code == 409, response.content
    assert response.json()["error"]["fields"] == {"member": ["Belongs to another tenant too."]}
    token.refresh_from_db()
    assert token.revoked_at is None
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(globex.url("contracts/")).status_code == 200


def test_an_admin_does_not_see_the_tokens_a_member_uses_in_another_tenant(acme, globex, dual):
    token, _ = dual
    membership = Membership.objects.get(tenant=acme.tenant, user=acme.agent.user)

    response = acme.admin.client.get(acme.url(f"members/{membership.pk}/tokens/"))

    assert response.status_code == 409, response.content
    assert response.json()["error"]["fields"] == {"member": ["Belongs to another tenant too."]}
    assert "globex-prod" not in str(response.content)


@pytest.mark.parametrize("role", ["viewer", "agent"])
def test_an_admin_cannot_reach_another_tenants_admin_through_membership_and_tokens(acme, globex, role):
    # Usernames are global: an existing account joins (as any member would)...
    added = acme.admin.client.post(acme.url("members/"), {"username": "globex-admin", "role": role}, format="json")
    assert added.status_code == 201, added.content
    token = globex.admin.user.api_tokens.get()
    # ...but its tokens are not acme's to list, issue or revoke.
    member = added.json()["id"]
    calls = [
        acme.admin.client.get(acme.url(f"members/{member}/tokens/")),
        acme.admin.client.post(acme.url(f"members/{member}/tokens/"), {"name": "mole"}, format="json"),
        acme.admin.client.post(acme.url(f"members/{member}/tokens/{token.pk}/revoke/")),
    ]
    assert [c.status_code for c in calls] == [409, 409, 409], [c.content for c in calls]
    assert globex.admin.user.api_tokens.count() == 1
    token.refresh_from_db()
    assert token.revoked_at is None
    assert globex.admin.client.get(globex.url("members/")).status_code == 200


def test_an_admin_cannot_mint_a_token_for_a_platform_account(acme):
    operator = UserFactory(username="platform-ops", is_staff=True, is_superuser=True)
    operator.save()
    added = acme.admin.client.post(acme.url("members/"), {"username": "platform-ops", "role": "agent"}, format="json")
    assert added.status_code == 409, added.content
    assert added.json()["error"]["fields"] == {"username": ["Not allowed."]}
    assert not Membership.objects.filter(tenant=acme.tenant, user=operator).exists()
    assert not operator.api_tokens.exists()
