"""The Agent Inbox prefix, /agent-inbox/<slug>/, in-process: every review task a thread
of its own with a HumanInterrupt, answered with [HumanResponse] through the same run and
resume services as the native prefix."""

from __future__ import annotations

import uuid

import pytest

from contracts.models import ContractStatus
from reviews.models import ReviewTask
from tenants.models import AuditRecord
from tests.contracts.platform.flow import GRAPH, body, call, contract_of, events, thread_with_contract
from tests.factories import HIGH_RISK_TEXT

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

INBOX = "agent-inbox"


def inbox(member, world, method, path, payload=None, **kwargs):
    return call(member, world, method, path, payload, prefix=INBOX, **kwargs)


def search(member, world, **query):
    response = inbox(member, world, "post", "threads/search", {"limit": 10, "offset": 0, **query})
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def contract(acme):
    thread_id, _ = thread_with_contract(acme)
    return contract_of(thread_id)


def tasks_of(contract) -> dict[str, ReviewTask]:
    return {t.kind: t for t in ReviewTask.objects.filter(contract=contract)}


def answer(member, world, task, responses, *, endpoint="runs/stream", **kwargs):
    return inbox(
        member,
        world,
        "post",
        f"threads/{task.pk}/{endpoint}",
        {"assistant_id": GRAPH, "command": {"resume": responses}, "stream_mode": "events"},
        **kwargs,
    )


def test_parallel_reviews_are_two_threads_each_with_one_human_interrupt(acme, contract):
    tasks = tasks_of(contract)
    threads = search(acme.reviewer2, acme, status="interrupted", metadata={"graph_id": GRAPH})
    assert {t["thread_id"] for t in threads} == {str(tasks["legal"].pk), str(tasks["finance"].pk)}
    for thread in threads:
        task = tasks[thread["metadata"]["kind"]]
        assert thread["metadata"]["contract_id"] == str(contract.pk)
        [[interrupt]] = thread["interrupts"].values()
        assert interrupt["id"] == task.interrupt_id
        [human] = interrupt["value"]
        assert human["action_request"]["action"] == f"{task.kind}_review"
        assert human["config"]["allow_accept"] and human["description"].startswith("## ")
    # Each reviewer's inbox is what they may decide: the legal reviewer sees legal only.
    assert [t["metadata"]["kind"] for t in search(acme.reviewer, acme, status="interrupted")] == ["legal"]
    assert search(acme.viewer, acme, status="interrupted") == []
    assert [t["metadata"]["kind"] for t in search(acme.reviewer2, acme, metadata={"kind": "finance"})] == ["finance"]
    assert search(acme.reviewer2, acme, metadata={"graph_id": "another"}) == []
    assert search(acme.reviewer2, acme, metadata={"unknown": 1}) == []
    assert inbox(acme.reviewer2, acme, "post", "threads/count", {"status": "interrupted"}).json() == 2


def test_agents_and_other_tenants_have_no_inbox(acme, globex, contract):
    assert inbox(acme.agent, acme, "post", "threads/search", {}).status_code == 403
    assert inbox(globex.admin, acme, "post", "threads/search", {}).status_code == 404
    legal = tasks_of(contract)["legal"]
    foreign = inbox(globex.admin, globex, "get", f"threads/{legal.pk}")
    missing = inbox(globex.admin, globex, "get", f"threads/{uuid.uuid4()}")
    assert foreign.status_code == missing.status_code == 404 and foreign.json() == missing.json()


def test_get_and_state_show_the_same_interrupt(acme, contract):
    legal = tasks_of(contract)["legal"]
    thread = inbox(acme.reviewer, acme, "get", f"threads/{legal.pk}").json()
    state = inbox(acme.reviewer, acme, "get", f"threads/{legal.pk}/state").json()
    assert state["next"] == ["legal_review"]
    # Agent Inbox's fallback reads tasks[-1].interrupts[-1].value.
    assert state["tasks"][-1]["interrupts"][-1]["value"] == thread["interrupts"][str(legal.pk)][0]["value"]
    # A viewer may look, and is offered nothing to do.
    viewed = inbox(acme.viewer, acme, "get", f"threads/{legal.pk}").json()
    assert set(viewed["interrupts"][str(legal.pk)][0]["value"][0]["config"].values()) == {False}


def test_accept_through_a_stream_of_events_approves_and_is_audited_as_agent_inbox(acme, contract):
    legal = tasks_of(contract)["legal"]
    [human] = inbox(acme.reviewer, acme, "get", f"threads/{legal.pk}").json()["interrupts"][str(legal.pk)][0]["value"]
    streamed = answer(acme.reviewer, acme, legal, [{"type": "accept", "args": human["action_request"]}])
    assert streamed.status_code == 200, streamed.content
    found = events(streamed)
    assert found[0][0] == "metadata"
    nodes = [d["metadata"].get("langgraph_node") for e, d in found if e == "events" and d["event"] == "on_chain_start"]
    assert "legal_review" in nodes
    assert not [e for e, _ in found if e == "error"]
    legal.refresh_from_db()
    assert (legal.status, legal.decision["decision"], legal.decided_by_id) == (
        "resolved",
        "approve",
        acme.reviewer.user.pk,
    )
    assert AuditRecord.objects.get(tenant=acme.tenant, action="review.resolved").interface == "agent-inbox"
    # The native prefix and the REST API see the same decision.
    assert acme.reviewer.client.get(acme.url(f"reviews/{legal.pk}/")).json()["decision"]["decision"] == "approve"
    assert inbox(acme.reviewer, acme, "get", f"threads/{legal.pk}").json()["status"] == "idle"
    # The finance item is still answerable on its own.
    assert [t["metadata"]["kind"] for t in search(acme.reviewer2, acme, status="interrupted")] == ["finance"]


def test_ignore_through_runs_create_rejects(acme, contract):
    finance = tasks_of(contract)["finance"]
    created = answer(acme.reviewer2, acme, finance, [{"type": "ignore", "args": None}], endpoint="runs")
    assert created.status_code == 200
    assert created.json()["thread_id"] == str(finance.pk)
    assert created["Content-Location"] == f"/threads/{finance.pk}/runs/{created.json()['run_id']}"
    finance.refresh_from_db()
    assert finance.decision["decision"] == "reject"
    run = inbox(acme.reviewer2, acme, "get", f"threads/{finance.pk}/runs/{created.json()['run_id']}").json()
    assert run["status"] == "success"
    assert [r["run_id"] for r in inbox(acme.reviewer2, acme, "get", f"threads/{finance.pk}/runs").json()] == [
        run["run_id"]
    ]


def test_an_edit_amends_and_a_response_rejects_with_its_text(acme):
    thread_id, _ = thread_with_contract(acme, text=HIGH_RISK_TEXT)
    legal = tasks_of(contract_of(thread_id))["legal"]
    edit = {
        "type": "edit",
        "args": {
            "action": "legal_review",
            "args": {"decision": "amend", "amendments": "Cap liability.\nDrop the indemnity.", "comment": ""},
        },
    }
    waited = answer(acme.reviewer, acme, legal, [edit], endpoint="runs/wait")
    output = body(waited)
    assert output["status"] == "resolved" and output["decision"]["decision"] == "amend"
    assert contract_of(thread_id).status == ContractStatus.AMENDED
    assert contract_of(thread_id).amendments == ["Cap liability.", "Drop the indemnity."]

    thread_id, _ = thread_with_contract(acme, text=HIGH_RISK_TEXT)
    legal = tasks_of(contract_of(thread_id))["legal"]
    answer(acme.reviewer, acme, legal, [{"type": "response", "args": "Needs a liability cap."}], endpoint="runs")
    legal.refresh_from_db()
    assert (legal.decision["decision"], legal.decision["comment"]) == ("reject", "Needs a liability cap.")


def test_a_second_answer_or_a_bad_one_is_refused(acme, contract):
    legal = tasks_of(contract)["legal"]
    assert answer(acme.reviewer, acme, legal, [{"type": "accept", "args": None}], endpoint="runs").status_code == 200
    again = answer(acme.reviewer, acme, legal, [{"type": "accept", "args": None}], endpoint="runs")
    assert (again.status_code, again.json()["code"]) == (409, "already_resolved")
    finance = tasks_of(contract)["finance"]
    bad = answer(acme.reviewer2, acme, finance, [{"type": "maybe"}], endpoint="runs")
    assert bad.status_code == 422 and "command.resume.0.type" in bad.json()["fields"]
    assert answer(acme.viewer, acme, finance, [{"type": "accept"}], endpoint="runs").status_code == 403
    not_theirs = answer(acme.reviewer, acme, finance, [{"type": "accept"}], endpoint="runs")
    assert not_theirs.status_code == 403
    with_input = inbox(
        acme.reviewer2,
        acme,
        "post",
        f"threads/{finance.pk}/runs",
        {"assistant_id": GRAPH, "input": {"contract_text": "x", "title": "y"}},
    )
    assert with_input.status_code == 422 and "input" in with_input.json()["fields"]
    assert ReviewTask.objects.get(pk=finance.pk).status == "pending"


def test_resolve_cancels_the_contract_as_a_tenant_admin(acme, contract):
    legal = tasks_of(contract)["legal"]
    end = {"values": None, "as_node": "__end__"}
    assert inbox(acme.reviewer, acme, "post", f"threads/{legal.pk}/state", end).status_code == 403
    resolved = inbox(acme.admin, acme, "post", f"threads/{legal.pk}/state", end)
    assert resolved.status_code == 200
    assert contract_of(contract.pk).status == ContractStatus.CANCELLED
    assert set(ReviewTask.objects.filter(contract=contract).values_list("status", flat=True)) == {"cancelled"}
    cancelled = AuditRecord.objects.get(tenant=acme.tenant, action="contract.cancelled")
    assert (cancelled.interface, cancelled.data["task"]) == ("agent-inbox", str(legal.pk))
    assert search(acme.admin, acme, status="interrupted") == []
