"""An API token on a tenant URL: the token and the caller's membership of that tenant
are read in one query (tenants.authentication), with the refusals in their order:
401 for a bad token, 404 for a tenant the caller is no member of, 403 for the role."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.postgresql.prepared import statement_sql
from tenants.models import ApiToken, Role
from tenants.services import membership_set

pytestmark = pytest.mark.django_db(transaction=True)


def _credential_reads(queries) -> list[str]:
    ran = [statement_sql(q["sql"]) for q in queries if not q["sql"].startswith("PREPARE ")]
    return [sql for sql in ran if "tenants_apitoken" in sql or 'FROM "tenants_membership"' in sql]


@pytest.mark.embedded
def test_the_token_and_the_membership_are_one_query(acme):
    with CaptureQueriesContext(connection) as queries:
        response = acme.reviewer.client.get(acme.url("reviews/"))
    assert response.status_code == 200
    [read] = _credential_reads(queries)
    assert "tenants_membership" in read and "tenants_apitoken" in read


@pytest.mark.embedded
def test_each_tenant_gets_the_callers_own_membership_there(acme, globex):
    membership_set(tenant=globex.tenant, user=acme.viewer.user, role=Role.REVIEWER)
    client = acme.viewer.client
    # A viewer in acme may not resume; the same token as a reviewer of globex is only
    # refused by the task's permission (404 for a task that does not exist), not the role.
    missing = "00000000-0000-0000-0000-000000000000"
    assert client.post(acme.url(f"reviews/{missing}/resume/"), {"decision": "approve"}, format="json").status_code == 403
    assert client.post(globex.url(f"reviews/{missing}/resume/"), {"decision": "approve"}, format="json").status_code == 404
    assert client.get(globex.url("reviews/")).status_code == 200


@pytest.mark.embedded
def test_refusals_keep_their_order(acme, globex):
    assert acme.reviewer.client.get(globex.url("reviews/")).status_code == 404
    assert acme.reviewer.client.get("/api/v1/tenants/no-such-tenant/reviews/").status_code == 404
    ApiToken.objects.filter(user=acme.reviewer.user).update(revoked_at=timezone.now())
    assert acme.reviewer.client.get(acme.url("reviews/")).status_code == 401
    assert acme.reviewer.client.get(globex.url("reviews/")).status_code == 401
    type(acme.viewer.user).objects.filter(pk=acme.viewer.user.pk).update(is_active=False)
    assert acme.viewer.client.get(acme.url("reviews/")).status_code == 401
