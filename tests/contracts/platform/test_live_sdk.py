"""The real `langgraph-sdk` client (the pinned version) against a live server process and
real workers on PostgreSQL: the whole HITL loop as an SDK user writes it, with our
authorisation, and one system of record with the REST API."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.errors import (
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
)

from contracts.models import Contract
from reviews.models import ReviewTask
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT, HIGH_RISK_TEXT
from tests.live import free_port, processes
from tests.support import postgresql_only, wait_until

pytestmark = [postgresql_only, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

GRAPH = "contract_review"


@pytest.fixture
def live(acme, globex):
    with processes() as running:
        server = running.server(LANGGRAPH_KEEPALIVE_SECONDS="1")
        running.worker()
        running.worker()
        yield running, server


def sdk(server, world, member):
    return get_sync_client(url=f"{server.http}/langgraph/{world.slug}", api_key=member.token)


def by_kind(interrupts: list[dict]) -> dict[str, str]:
    return {item["value"]["kind"]: item["id"] for item in interrupts}


def test_the_hitl_loop_through_the_python_sdk(live, acme, globex):
    _, server = live
    agent, reviewer = sdk(server, acme, acme.agent), sdk(server, acme, acme.reviewer)

    [assistant] = agent.assistants.search(graph_id=GRAPH)
    assert assistant["graph_id"] == GRAPH
    thread = agent.threads.create(metadata={"ticket": "T-1"})
    paused = agent.runs.wait(thread["thread_id"], GRAPH, input={"contract_text": HIGH_RISK_TEXT, "title": "MSA"})
    [interrupt] = paused["__interrupt__"]
    assert interrupt["value"]["kind"] == "legal" and interrupt["value"]["risk_score"] > 0.7

    found = agent.threads.search(status="interrupted", metadata={"ticket": "T-1"})
    assert [t["thread_id"] for t in found] == [thread["thread_id"]]
    state = agent.threads.get_state(thread["thread_id"])
    assert [i["id"] for i in state["interrupts"]] == [interrupt["id"]]
    assert state["next"] == ["legal_review"]

    # Refused: a viewer may not decide, another tenant's token does not find the thread,
    # a malformed decision never reaches the graph.
    answer = {"resume": {interrupt["id"]: {"decision": "approve"}}}
    with pytest.raises(PermissionDeniedError):
        sdk(server, acme, acme.viewer).runs.create(thread["thread_id"], GRAPH, command=answer)
    with pytest.raises(NotFoundError):
        get_sync_client(url=f"{server.http}/langgraph/acme", api_key=globex.admin.token).threads.get(
            thread["thread_id"]
        )
    with pytest.raises(NotFoundError):
        sdk(server, globex, globex.admin).threads.get(thread["thread_id"])
    with pytest.raises(UnprocessableEntityError):
        reviewer.runs.create(thread["thread_id"], GRAPH, command={"resume": {interrupt["id"]: {"decision": "maybe"}}})

    done = reviewer.runs.wait(thread["thread_id"], GRAPH, command=answer)
    assert done["human_decision"] == "approved" and "__interrupt__" not in done
    assert agent.threads.get(thread["thread_id"])["status"] == "idle"

    # The same answer again: a ConflictError listing what is pending (nothing).
    with pytest.raises(ConflictError) as again:
        reviewer.runs.create(thread["thread_id"], GRAPH, command=answer)
    assert again.value.body["pending_ids"] == [] and again.value.code == "already_resolved"
    # runs.wait reads its answer through the SDK's reconnecting request, which raises
    # httpx's HTTPStatusError (ConflictError's base) rather than the typed error.
    with pytest.raises(httpx.HTTPStatusError) as waited:
        reviewer.runs.wait(thread["thread_id"], GRAPH, command=answer)
    assert waited.value.response.status_code == 409

    # One system of record: the REST API and the audit trail show the SDK's decision.
    task = ReviewTask.objects.get(contract_id=thread["thread_id"])
    detail = acme.admin.client.get(acme.url(f"reviews/{task.pk}/")).json()
    assert (detail["status"], detail["decided_by"], detail["decision"]["decision"]) == (
        "resolved",
        "acme-reviewer",
        "approve",
    )
    audit = acme.admin.client.get(acme.url("audit/")).json()["results"]
    assert [(r["action"], r["interface"], r["actor"]) for r in audit if r["target_id"] == str(task.pk)] == [
        ("review.resolved", "langgraph", "acme-reviewer")
    ]


def test_a_decision_made_over_rest_is_what_the_sdk_sees(live, acme):
    _, server = live
    agent = sdk(server, acme, acme.agent)
    thread = agent.threads.create()
    paused = agent.runs.wait(thread["thread_id"], GRAPH, input={"contract_text": HIGH_RISK_TEXT, "title": "MSA"})
    task = ReviewTask.objects.get(contract_id=thread["thread_id"])
    assert (
        acme.reviewer.client.post(
            acme.url(f"reviews/{task.pk}/resume/"), {"decision": "reject"}, format="json"
        ).status_code
        == 202
    )
    wait_until(
        lambda: agent.threads.get(thread["thread_id"])["values"].get("human_decision") == "rejected",
        what="the REST decision applied",
    )
    with pytest.raises(ConflictError):
        sdk(server, acme, acme.senior).runs.create(
            thread["thread_id"], GRAPH, command={"resume": {paused["__interrupt__"][0]["id"]: {"decision": "approve"}}}
        )
    history = agent.threads.get(thread["thread_id"])["values"]["history"]
    assert [(h["kind"], h["decision"], h["decided_by_username"]) for h in history] == [
        ("legal", "reject", "acme-reviewer")
    ]


@pytest.mark.parametrize("order", [("legal", "finance"), ("finance", "legal")])
def test_legal_and_finance_pending_at_once_are_answered_by_id_in_either_order(live, acme, order):
    _, server = live
    agent = sdk(server, acme, acme.agent)
    thread = agent.threads.create()
    paused = agent.runs.wait(
        thread["thread_id"], GRAPH, input={"contract_text": HIGH_RISK_LARGE_PAYMENT_TEXT, "title": "Supply"}
    )
    ids = by_kind(paused["__interrupt__"])
    assert set(ids) == {"legal", "finance"}
    deciders = {"legal": sdk(server, acme, acme.reviewer), "finance": sdk(server, acme, acme.reviewer2)}
    first, second = order
    halfway = deciders[first].runs.wait(
        thread["thread_id"], GRAPH, command={"resume": {ids[first]: {"decision": "approve"}}}
    )
    assert [i["id"] for i in halfway["__interrupt__"]] == [ids[second]]
    done = deciders[second].runs.wait(
        thread["thread_id"], GRAPH, command={"resume": {ids[second]: {"decision": "approve"}}}
    )
    assert done["human_decision"] == "approved"
    assert sorted(h["kind"] for h in done["history"]) == ["finance", "legal"]


def test_two_answers_at_the_same_moment_are_both_applied_one_run_after_the_other(live, acme):
    """A resume never starts while a run of the thread is in flight: the second is
    queued behind the first (the run lease), and both are applied."""
    _, server = live
    agent = sdk(server, acme, acme.agent)
    thread = agent.threads.create()
    ids = by_kind(
        agent.runs.wait(
            thread["thread_id"], GRAPH, input={"contract_text": HIGH_RISK_LARGE_PAYMENT_TEXT, "title": "Supply"}
        )["__interrupt__"]
    )
    barrier, outputs = threading.Barrier(2), {}

    def decide(kind: str, member) -> None:
        client = sdk(server, acme, member)
        barrier.wait(timeout=30)
        outputs[kind] = client.runs.wait(
            thread["thread_id"], GRAPH, command={"resume": {ids[kind]: {"decision": "approve"}}}
        )

    workers = [
        threading.Thread(target=decide, args=("legal", acme.reviewer)),
        threading.Thread(target=decide, args=("finance", acme.reviewer2)),
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert set(outputs) == {"legal", "finance"}
    assert agent.threads.get(thread["thread_id"])["values"]["human_decision"] == "approved"
    assert Contract.objects.get(pk=thread["thread_id"]).status == "approved"


def test_runs_stream_yields_the_interrupt(live, acme):
    _, server = live
    agent = sdk(server, acme, acme.agent)
    thread = agent.threads.create()
    parts = list(
        agent.runs.stream(
            thread["thread_id"],
            GRAPH,
            input={"contract_text": HIGH_RISK_TEXT, "title": "MSA"},
            stream_mode=["values", "updates"],
        )
    )
    assert parts[0].event == "metadata"
    [values] = [p.data for p in parts if p.event == "values"]
    [updates] = [p.data for p in parts if p.event == "updates"]
    assert (
        [i["value"]["kind"] for i in values["__interrupt__"]]
        == ["legal"]
        == [i["value"]["kind"] for i in updates["__interrupt__"]]
    )
    # The SDK's v2 parts put the interrupts apart from the values.
    [part] = [p for p in agent.runs.join_stream(thread["thread_id"], parts[0].data["run_id"]) if p.event == "values"]
    assert part.data["__interrupt__"] == values["__interrupt__"]
    v2 = [
        p
        for p in sdk(server, acme, acme.reviewer).runs.stream(
            thread["thread_id"],
            GRAPH,
            command={"resume": {values["__interrupt__"][0]["id"]: {"decision": "approve"}}},
            stream_mode="values",
            version="v2",
        )
    ]
    assert v2[-1]["type"] == "values" and v2[-1]["interrupts"] == [] and v2[-1]["data"]["human_decision"] == "approved"


def test_wait_keeps_the_connection_alive_until_a_worker_runs_it(acme):
    """No worker yet: runs.wait sends newlines (here every second) and answers once a
    worker has run the contract; its Location rejoins the run."""
    with processes() as running:
        server = running.server(LANGGRAPH_KEEPALIVE_SECONDS="1")
        agent = sdk(server, acme, acme.agent)
        thread = agent.threads.create()
        url = f"{server.http}/langgraph/acme/threads/{thread['thread_id']}/runs/wait"
        chunks: list[tuple[float, bytes]] = []
        started = time.monotonic()
        body = {"assistant_id": GRAPH, "input": {"contract_text": HIGH_RISK_TEXT, "title": "MSA"}}
        with httpx.stream(
            "POST", url, json=body, headers={"x-api-key": acme.agent.token}, timeout=60, trust_env=False
        ) as response:
            assert response.headers["content-type"] == "application/json"
            location = response.headers["location"]
            for chunk in response.iter_raw():
                chunks.append((time.monotonic() - started, chunk))
                if len(chunks) == 3:
                    running.worker()  # two keep-alives seen: now let a worker run it
        keepalives = [at for at, chunk in chunks if chunk.strip() == b""]
        assert len(keepalives) >= 2
        final = b"".join(chunk for _, chunk in chunks)
        assert b'"__interrupt__"' in final
        joined = get_sync_client(url=f"{server.http}/langgraph/acme", api_key=acme.viewer.token).http.get(location)
        assert joined["__interrupt__"][0]["value"]["kind"] == "legal"


def test_without_its_database_the_prefixes_answer_503_in_their_own_format(acme):
    dead = f"postgres://postgres@127.0.0.1:{free_port()}/hitl"  # nothing listens there
    with processes() as running:
        server = running.server(DATABASE_URL=dead)
        with pytest.raises(InternalServerError) as refused:
            sdk(server, acme, acme.agent).threads.search()
        assert refused.value.status_code == 503 and refused.value.code == "service_unavailable"
        for prefix in ("langgraph", "agent-inbox"):
            answer = httpx.post(f"{server.http}/{prefix}/acme/threads/search", json={}, trust_env=False, timeout=30,
                                headers={"x-api-key": acme.agent.token})
            assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
            assert answer.json()["detail"] == "The database is unavailable; retry shortly."
        # /info needs no database.
        assert httpx.get(f"{server.http}/langgraph/acme/info", trust_env=False, timeout=30).status_code == 200
