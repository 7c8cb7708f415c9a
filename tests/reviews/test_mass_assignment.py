"""Writable endpoints accept only the fields they declare: a client cannot set a
tenant, a status, a decider, a thread, an id or a risk score by adding it to a body.
Each such field is a 400 that names it, and nothing in the database changes."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import TestCase

from contracts.models import Contract, ContractGroupPermission, ContractUserPermission
from contracts.services import contract_submit
from reviews.models import ReviewTask, ReviewTaskGroupPermission, ReviewTaskUserPermission
from tenants.models import AuditRecord, Membership
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT, LOW_RISK_TEXT
from tests.tenants.module_worlds import committed_worlds

pytestmark = pytest.mark.django_db

FORBIDDEN_FIELDS = ("tenant", "status", "decided_by", "thread_id", "id", "risk_score")
# Decisions on the module's own tasks are recorded but not driven: the drive would move
# the threads' checkpoints, which a test's rollback does not undo, and the next test's
# resume of the same (rolled-back, pending again) task would then find its interrupt gone
# (409: a decision is bound to the live interrupt).
DRIVE = False


def forged(field: str, acme, globex, contract: Contract) -> object:
    """A value an attacker would like the field to take."""
    return {
        "tenant": str(globex.tenant.pk),
        "status": "approved",
        "decided_by": acme.admin.user.pk,
        "thread_id": globex.tenant.pk.hex + ":contract:" + str(contract.pk),
        "id": str(uuid.uuid4()),
        "risk_score": 0.0,
    }[field]


def snapshot() -> dict:
    """Every row the endpoints below could touch, all fields."""
    return {
        model.__name__: sorted(model.objects.values_list(), key=repr)
        for model in (Contract, ReviewTask, Membership, ReviewTaskUserPermission, ReviewTaskGroupPermission,
                      ContractUserPermission, ContractGroupPermission, get_user_model())
    } | {"audit": AuditRecord.objects.count()}


def _build(acme, globex):
    with TestCase.captureOnCommitCallbacks(execute=True):
        contract = contract_submit(tenant=acme.tenant, submitted_by=acme.agent.user, title="MSA",
                                   text=HIGH_RISK_LARGE_PAYMENT_TEXT)
    legal = ReviewTask.objects.get(contract=contract, kind="legal")
    viewer = Membership.objects.get(tenant=acme.tenant, user=acme.viewer.user)
    return acme, globex, contract, legal, viewer


@pytest.fixture(scope="module")
def _module_setting(django_db_setup, django_db_blocker):
    # Built once; every test runs in a rolled-back transaction on top of it.
    with committed_worlds(django_db_blocker, _build) as built:
        yield built


@pytest.fixture
def setting(_module_setting, db):
    return _module_setting


# endpoint -> (who calls, method, path, a valid body) given (acme, contract, legal task, viewer membership)
ENDPOINTS = {
    "submit contract": ("agent", "post", lambda c, t, m: "contracts/", {"title": "NDA", "text": LOW_RISK_TEXT}),
    "resume": ("reviewer", "post", lambda c, t, m: f"reviews/{t.pk}/resume/", {"decision": "approve"}),
    "add member": ("admin", "post", lambda c, t, m: "members/", {"username": "acme-newcomer", "role": "viewer"}),
    "change member": ("admin", "patch", lambda c, t, m: f"members/{m.pk}/", {"role": "reviewer"}),
    "grant on task": ("admin", "post", lambda c, t, m: f"reviews/{t.pk}/grants/", {"user": "acme-senior"}),
    "revoke on task": ("admin", "post", lambda c, t, m: f"reviews/{t.pk}/grants/revoke/", {"team": "reviewers"}),
    "grant on thread": ("admin", "post", lambda c, t, m: f"contracts/{c.pk}/grants/", {"user": "acme-senior"}),
    "revoke on thread": ("admin", "post", lambda c, t, m: f"contracts/{c.pk}/grants/revoke/", {"user": "acme-senior"}),
}


@pytest.mark.parametrize("field", FORBIDDEN_FIELDS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_field_the_endpoint_does_not_declare_is_a_400_naming_it(setting, endpoint, field):
    acme, globex, contract, legal, viewer = setting
    who, method, path, body = ENDPOINTS[endpoint]
    before = snapshot()

    with TestCase.captureOnCommitCallbacks(execute=True) as callbacks:
        response = getattr(getattr(acme, who).client, method)(
            acme.url(path(contract, legal, viewer)), {**body, field: forged(field, acme, globex, contract)},
            format="json")

    assert response.status_code == 400, f"{endpoint} + {field}: {response.status_code} {response.content!r}"
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"], f"{endpoint}: {error}"
    assert field in error["message"]
    assert snapshot() == before, f"{endpoint} + {field} changed the database"
    assert callbacks == []  # nothing queued either


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_undeclared_field_is_named_at_once(setting, endpoint):
    acme, globex, contract, legal, viewer = setting
    who, method, path, body = ENDPOINTS[endpoint]
    before = snapshot()
    extra = {field: forged(field, acme, globex, contract) for field in FORBIDDEN_FIELDS}

    response = getattr(getattr(acme, who).client, method)(
        acme.url(path(contract, legal, viewer)), {**body, **extra}, format="json")

    assert response.status_code == 400, response.content
    assert set(FORBIDDEN_FIELDS) <= set(response.json()["error"]["fields"])
    assert snapshot() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_valid_body_alone_is_accepted(setting, endpoint):
    """Control: the 400s above come from the extra field, not from the body."""
    acme, _, contract, legal, viewer = setting
    who, method, path, body = ENDPOINTS[endpoint]
    with TestCase.captureOnCommitCallbacks(execute=DRIVE):
        response = getattr(getattr(acme, who).client, method)(
            acme.url(path(contract, legal, viewer)), body, format="json")
    assert response.status_code in (200, 201, 202), f"{endpoint}: {response.status_code} {response.content!r}"


@pytest.mark.parametrize("field", [f for f in FORBIDDEN_FIELDS if f != "id"])  # an item's id is its task
def test_a_batch_item_with_an_undeclared_field_is_refused_alone(setting, field):
    """The batch reports per item; the bad item names the field and changes nothing."""
    acme, globex, contract, legal, _ = setting
    finance = ReviewTask.objects.get(contract=contract, kind="finance")
    before_legal = ReviewTask.objects.filter(pk=legal.pk).values().get()

    with TestCase.captureOnCommitCallbacks(execute=DRIVE):
        response = acme.admin.client.post(acme.url("reviews/batch-resume/"), {"items": [
            {"id": str(legal.pk), "decision": "approve", field: forged(field, acme, globex, contract)},
            {"id": str(finance.pk), "decision": "approve"},
        ]}, format="json")

    assert response.status_code == 200, response.content
    bad, good = response.json()["results"]
    assert (bad["id"], bad["outcome"]) == (str(legal.pk), "invalid")
    assert field in bad["fields"]
    assert good["outcome"] == "resolved"
    assert ReviewTask.objects.filter(pk=legal.pk).values().get() == before_legal
    assert not AuditRecord.objects.filter(target_id=str(legal.pk), action="review.resolved").exists()


def test_a_resume_cannot_forge_who_decided(setting):
    """Even the fields the decision carries (decided_by in the stored decision) come from
    the server: the body's version is refused, and the accepted decision names the caller."""
    acme, _, contract, legal, _ = setting
    refused = acme.reviewer.client.post(acme.url(f"reviews/{legal.pk}/resume/"),
                                        {"decision": "approve", "decided_by_username": "acme-admin"}, format="json")
    assert refused.status_code == 400
    assert "decided_by_username" in refused.json()["error"]["fields"]
    with TestCase.captureOnCommitCallbacks(execute=DRIVE):
        accepted = acme.reviewer.client.post(acme.url(f"reviews/{legal.pk}/resume/"), {"decision": "approve"},
                                             format="json")
    assert accepted.status_code == 202
    task = ReviewTask.objects.get(pk=legal.pk)  # the module's instance stays as built
    assert (task.decided_by_id, task.decision["decided_by_username"]) == (acme.reviewer.user.pk, "acme-reviewer")


def test_without_permission_or_membership_a_forged_body_is_refused_before_it_is_read(setting):
    acme, globex, contract, legal, viewer = setting
    before = snapshot()
    forged_status = acme.viewer.client.post(acme.url(f"reviews/{legal.pk}/resume/"),
                                            {"decision": "approve", "status": "resolved"}, format="json")
    forged_tenant = globex.admin.client.post(
        acme.url("members/"), {"username": "globex-mole", "role": "admin", "tenant": str(acme.tenant.pk)},
        format="json")
    assert (forged_status.status_code, forged_tenant.status_code) == (403, 404)
    assert snapshot() == before


@pytest.mark.parametrize("kind", ["legal", "finance"])
def test_the_published_response_schema_lists_exactly_what_the_resume_accepts(setting, kind):
    """Each task's `response_schema` is what a client may send; it used to list the
    server's own decided_by, decided_at, task_id and decided_by_username, which the
    resume then refused as unknown fields."""
    acme, globex, contract, legal, _ = setting
    task = ReviewTask.objects.get(contract=contract, kind=kind)
    detail = acme.reviewer2.client.get(acme.url(f"reviews/{task.pk}/"))
    assert detail.status_code == 200
    schema = detail.json()["response_schema"]
    assert set(schema["properties"]) == {"decision", "amendments", "comment"}
    assert schema["required"] == ["decision"] and schema["additionalProperties"] is False
    # Every property the schema offers is accepted by the resume.
    body = {"decision": "approve", "amendments": [], "comment": "fine"}
    with TestCase.captureOnCommitCallbacks(execute=True):
        accepted = acme.reviewer2.client.post(acme.url(f"reviews/{task.pk}/resume/"), body, format="json")
    assert accepted.status_code == 202, accepted.content
    # Another tenant's member cannot read the schema at all.
    assert globex.admin.client.get(acme.url(f"reviews/{task.pk}/")).status_code == 404
