"""Service accounts: a tenant admin issues and revokes API tokens for the tenant's agents."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tenants.models import Membership, Role
from tenants.services import membership_set
from tests.factories import HIGH_RISK_TEXT

pytestmark = pytest.mark.django_db(transaction=True)


def _member_id(world, user) -> int:
    return Membership.objects.get(tenant=world.tenant, user=user).pk


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_admin_issues_a_token_that_submits_but_never_resumes_then_revokes_it(acme):
    member_id = _member_id(acme, acme.agent.user)
    issued = acme.admin.client.post(acme.url(f"members/{member_id}/tokens/"), {"name": "ci-bot"}, format="json")
    assert issued.status_code == 201, issued.content
    key = issued.json()["key"]
    agent = _client(key)

    submitted = agent.post(acme.url("contracts/"), {"title": "MSA", "text": HIGH_RISK_TEXT}, format="json")
    assert submitted.status_code == 202
    assert agent.get(acme.url(f"contracts/{submitted.json()['id']}/")).status_code == 200
    [task] = acme.reviewer.client.get(acme.url(f"reviews/?contract={submitted.json()['id']}")).json()["results"]
    assert agent.post(acme.url(f"reviews/{task['id']}/resume/"), {"decision": "approve"}, format="json").status_code == 403
    assert agent.get(acme.url("reviews/")).status_code == 403

    listed = acme.admin.client.get(acme.url(f"members/{member_id}/tokens/")).json()["results"]
    assert "key" not in listed[0] and any(t["name"] == "ci-bot" for t in listed)

    token_id = issued.json()["id"]
    assert acme.admin.client.post(acme.url(f"members/{member_id}/tokens/{token_id}/revoke/")).status_code == 200
    assert agent.get(acme.url("contracts/")).status_code == 401
    actions = [r["action"] for r in acme.admin.client.get(acme.url("audit/")).json()["results"]]
    assert "token.issued" in actions and "token.revoked" in actions


def test_tokens_only_for_agents_of_this_tenant_alone(acme, globex):
    reviewer_id = _member_id(acme, acme.reviewer.user)
    refused = acme.admin.client.post(acme.url(f"members/{reviewer_id}/tokens/"), {}, format="json")
    assert refused.status_code == 409

    # An agent that also belongs to globex: a token for it would reach into globex.
    membership_set(tenant=globex.tenant, user=acme.agent.user, role=Role.AGENT)
    shared = acme.admin.client.post(acme.url(f"members/{_member_id(acme, acme.agent.user)}/tokens/"), {}, format="json")
    assert shared.status_code == 409


def test_non_admins_and_other_tenants_cannot_issue(acme, globex):
    member_id = _member_id(acme, acme.agent.user)
    assert acme.viewer.client.post(acme.url(f"members/{member_id}/tokens/"), {}, format="json").status_code == 403
    assert acme.reviewer.client.get(acme.url(f"members/{member_id}/tokens/")).status_code == 403
    assert globex.admin.client.post(acme.url(f"members/{member_id}/tokens/"), {}, format="json").status_code == 404
    assert globex.admin.client.post(globex.url(f"members/{member_id}/tokens/"), {}, format="json").status_code == 404
