"""The contracts API as an agent uses it next to the review queue: submit (202 +
Location), follow the run's state, list by status / run_state / creation time with a
cursor."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from contracts.models import Contract
from tests.factories import (
    CRITICAL_RISK_TEXT,
    HIGH_RISK_LARGE_PAYMENT_TEXT,
    HIGH_RISK_TEXT,
    LARGE_PAYMENT_TEXT,
    LOW_RISK_TEXT,
)

pytestmark = pytest.mark.django_db(transaction=True)


def submit(world, text: str, title: str = "MSA", member=None):
    return (member or world.agent).client.post(world.url("contracts/"), {"title": title, "text": text}, format="json")


def listed(member, world, **params) -> dict:
    response = member.client.get(world.url(f"contracts/?{urlencode(params)}"))
    assert response.status_code == 200, response.content
    return response.json()


def test_an_agent_submits_and_follows_location_to_the_run_state(acme):
    response = submit(acme, HIGH_RISK_LARGE_PAYMENT_TEXT)
    assert response.status_code == 202, response.content
    body = response.json()
    assert response.headers["Location"] == f"/api/v1/tenants/acme/contracts/{body['id']}/"
    # The immediate task backend has already run the graph up to its interrupts.
    assert (body["status"], body["run_state"]) == ("waiting_for_review", "waiting_for_review")
    assert body["thread_id"] == f"{acme.tenant.id}:contract:{body['id']}"

    detail = acme.agent.client.get(response.headers["Location"])
    assert detail.status_code == 200
    contract = detail.json()
    assert contract["run_state"] == "waiting_for_review"
    assert sorted(t["kind"] for t in contract["pending_tasks"]) == ["finance", "legal"]
    assert {t["interrupt_id"] for t in contract["pending_tasks"]} and all(t["id"] for t in contract["pending_tasks"])
    assert contract["text"] == HIGH_RISK_LARGE_PAYMENT_TEXT

    # A decision later moves the run on; the agent sees it at the same Location.
    legal = next(t for t in contract["pending_tasks"] if t["kind"] == "legal")
    acme.reviewer.client.post(acme.url(f"reviews/{legal['id']}/resume/"), {"decision": "approve"}, format="json")
    after = acme.agent.client.get(response.headers["Location"]).json()
    assert after["run_state"] == "waiting_for_review"
    assert [t["kind"] for t in after["pending_tasks"]] == ["finance"]
    finance = after["pending_tasks"][0]
    acme.reviewer2.client.post(acme.url(f"reviews/{finance['id']}/resume/"), {"decision": "approve"}, format="json")
    final = acme.agent.client.get(response.headers["Location"]).json()
    assert (final["status"], final["run_state"], final["pending_tasks"]) == ("approved", "completed", [])


def test_a_low_risk_contract_completes_without_review(acme):
    body = submit(acme, LOW_RISK_TEXT).json()
    assert (body["status"], body["run_state"]) == ("auto_approved", "completed")
    assert acme.agent.client.get(acme.url(f"contracts/{body['id']}/")).json()["pending_tasks"] == []


@pytest.fixture
def contracts(acme, globex) -> dict[str, list[str]]:
    """Six acme contracts in known states (one run failed) and one of globex."""
    ids: dict[str, list[str]] = {"waiting": [], "completed": [], "failed": []}
    for text in (HIGH_RISK_TEXT, CRITICAL_RISK_TEXT, LARGE_PAYMENT_TEXT):
        ids["waiting"].append(submit(acme, text).json()["id"])
    ids["completed"].append(submit(acme, LOW_RISK_TEXT).json()["id"])
    rejected = submit(acme, HIGH_RISK_TEXT).json()["id"]
    [task] = acme.agent.client.get(acme.url(f"contracts/{rejected}/")).json()["pending_tasks"]
    acme.reviewer.client.post(acme.url(f"reviews/{task['id']}/resume/"), {"decision": "reject"}, format="json")
    ids["completed"].append(rejected)
    failed = submit(acme, LOW_RISK_TEXT).json()["id"]
    Contract.objects.filter(pk=failed).update(status="failed", last_error="RuntimeError: boom")
    ids["failed"].append(failed)
    ids["foreign"] = [submit(globex, HIGH_RISK_TEXT).json()["id"]]
    # Creation one minute apart, newest last, so ranges and order are exact.
    base = timezone.now().replace(microsecond=0) - timedelta(days=1)
    order = ids["waiting"] + ids["completed"] + ids["failed"]
    for i, contract_id in enumerate(order):
        Contract.objects.filter(pk=contract_id).update(created_at=base + timedelta(minutes=i))
    ids["order"] = order
    ids["base"] = [base.isoformat()]
    return ids


def test_filter_by_run_state(acme, contracts):
    waiting = listed(acme.agent, acme, run_state="waiting_for_review")["results"]
    assert [c["id"] for c in waiting] == contracts["waiting"][::-1]  # newest first
    assert all(c["run_state"] == "waiting_for_review" for c in waiting)
    completed = listed(acme.agent, acme, run_state="completed")["results"]
    assert [c["id"] for c in completed] == contracts["completed"][::-1]
    assert [c["id"] for c in listed(acme.agent, acme, run_state="failed")["results"]] == contracts["failed"]
    assert listed(acme.agent, acme, run_state="running")["results"] == []


def test_filter_by_status(acme, contracts):
    assert [c["id"] for c in listed(acme.agent, acme, status="rejected")["results"]] == [contracts["completed"][1]]
    assert [c["id"] for c in listed(acme.agent, acme, status="auto_approved")["results"]] == [contracts["completed"][0]]
    assert listed(acme.agent, acme, status="approved")["results"] == []
    assert len(listed(acme.agent, acme, status="waiting_for_review", run_state="waiting_for_review")["results"]) == 3
    assert listed(acme.agent, acme, status="rejected", run_state="waiting_for_review")["results"] == []


def test_filter_by_creation_range(acme, contracts):
    base = timezone.datetime.fromisoformat(contracts["base"][0])
    at = lambda minutes: (base + timedelta(minutes=minutes)).isoformat()  # noqa: E731
    order = contracts["order"]
    assert [c["id"] for c in listed(acme.agent, acme, created_after=at(4))["results"]] == order[4:][::-1]
    assert [c["id"] for c in listed(acme.agent, acme, created_before=at(2))["results"]] == order[:2][::-1]
    assert [c["id"] for c in listed(acme.agent, acme, created_after=at(1), created_before=at(3))["results"]] == order[1:3][::-1]


def test_cursor_walks_every_contract_once_newest_first(acme, contracts):
    for page_size in (1, 2, 4):
        walked, cursor = [], None
        while True:
            page = listed(acme.agent, acme, page_size=page_size, **({"cursor": cursor} if cursor else {}))
            assert 1 <= len(page["results"]) <= page_size
            walked += [c["id"] for c in page["results"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert walked == contracts["order"][::-1], page_size
    # Filters hold across pages too.
    first = listed(acme.agent, acme, page_size=2, run_state="waiting_for_review")
    rest = listed(acme.agent, acme, page_size=2, run_state="waiting_for_review", cursor=first["next_cursor"])
    assert [c["id"] for c in first["results"] + rest["results"]] == contracts["waiting"][::-1]
    assert rest["next_cursor"] is None


BAD_FILTERS = [
    ({"run_state": "sleeping"}, "run_state"),
    ({"status": "done"}, "status"),
    ({"created_after": "last week"}, "created_after"),
    ({"page_size": 101}, "page_size"),
    ({"page_size": 0}, "page_size"),
    ({"cursor": "garbage!"}, "cursor"),
    ({"tenant": "globex"}, "tenant"),
]


def test_bad_filters_are_400_naming_them(acme, contracts):
    for params, field in BAD_FILTERS:
        response = acme.agent.client.get(acme.url(f"contracts/?{urlencode(params)}"))
        assert response.status_code == 400, params
        assert field in response.json()["error"]["fields"], params


def test_submit_validates_its_input(acme):
    for body, field in [
        ({"title": "x"}, "text"),
        ({"text": HIGH_RISK_TEXT}, "title"),
        ({"title": "x" * 201, "text": HIGH_RISK_TEXT}, "title"),
        ({"title": "x", "text": HIGH_RISK_TEXT, "status": "approved"}, "status"),
        ({"title": "x", "text": HIGH_RISK_TEXT, "tenant": "globex"}, "tenant"),
    ]:
        response = acme.agent.client.post(acme.url("contracts/"), body, format="json")
        assert response.status_code == 400, body
        assert field in response.json()["error"]["fields"], body
    assert not Contract.objects.exists()


def test_contracts_are_tenant_scoped_and_viewers_may_not_submit(acme, globex, anon):
    created = submit(acme, HIGH_RISK_TEXT).json()
    missing = globex.agent.client.get(globex.url(f"contracts/{uuid.uuid4()}/"))
    foreign = globex.agent.client.get(globex.url(f"contracts/{created['id']}/"))
    assert (foreign.status_code, foreign.json()) == (404, missing.json())
    assert globex.agent.client.get(acme.url(f"contracts/{created['id']}/")).status_code == 404
    assert listed(globex.agent, globex)["results"] == []
    assert submit(acme, HIGH_RISK_TEXT, member=globex.agent).status_code == 404  # not a member of acme

    refused = submit(acme, HIGH_RISK_TEXT, member=acme.viewer)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")
    assert anon.post(acme.url("contracts/"), {"title": "x", "text": HIGH_RISK_TEXT}, format="json").status_code == 401
    assert Contract.objects.count() == 1
