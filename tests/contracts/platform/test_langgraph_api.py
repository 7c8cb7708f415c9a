"""The native prefix, /langgraph/<slug>/, in-process: the shapes the SDK reads, the
rules it meets (the resume service's), and its errors as {"detail": ...} with the status
codes the SDK maps to its exceptions."""

from __future__ import annotations

import uuid

import pytest
from django.test import override_settings

from contracts.models import Contract, ContractStatus, Run
from contracts.platform.serializers import ASSISTANT_ID
from reviews.models import QueueEvent, ReviewTask
from tenants.models import AuditRecord
from tests.contracts.platform.flow import (
    GRAPH,
    body,
    call,
    client,
    contract_of,
    events,
    interrupt_ids,
    thread_with_contract,
    url,
)
from tests.factories import CRITICAL_RISK_TEXT, HIGH_RISK_TEXT, LOW_RISK_TEXT

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def resume(member, world, thread_id, resume_value, *, endpoint="runs", **headers):
    return call(
        member,
        world,
        "post",
        f"threads/{thread_id}/{endpoint}",
        {"assistant_id": GRAPH, "command": {"resume": resume_value}},
        **headers,
    )


# --- Unauthenticated -------------------------------------------------------------------


def test_ok_and_info_answer_without_credentials_and_say_nothing_of_any_tenant(acme):
    anonymous = client(None)
    assert anonymous.get("/langgraph/acme/ok").json() == {"ok": True}
    info = anonymous.get("/langgraph/acme/info").json()
    assert info["flags"]["assistants"] is True and info["flags"]["strict_resume"] is True
    assert info["host"]["project_id"] is None and info["host"]["tenant_id"] is None
    # The same for a tenant that does not exist: /info reveals nothing.
    assert anonymous.get("/langgraph/no-such-tenant/info").json() == info
    assert anonymous.get("/agent-inbox/acme/info").json() == info


def test_without_a_token_it_is_401_and_with_a_wrong_one_too(acme):
    for api in (client(None), client(None)):
        response = api.post(url(acme, "threads/search"), {}, format="json")
        assert response.status_code == 401
        assert set(response.json()) >= {"detail", "code"}
    wrong = client(None)
    wrong.credentials(HTTP_X_API_KEY="not-a-token")
    assert wrong.post(url(acme, "threads/search"), {}, format="json").status_code == 401


def test_bearer_and_x_api_key_are_the_same_token(acme):
    bearer = client(None)
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {acme.agent.token}")
    assert bearer.post(url(acme, "assistants/search"), {}, format="json").status_code == 200
    assert client(acme.agent).post(url(acme, "assistants/search"), {}, format="json").status_code == 200


# --- Assistants ------------------------------------------------------------------------


def test_one_assistant_found_by_its_id_or_its_graph_name(acme, globex):
    [assistant] = call(acme.viewer, acme, "post", "assistants/search", {}).json()
    assert assistant["assistant_id"] == str(uuid.uuid5(uuid.NAMESPACE_URL, GRAPH)) == ASSISTANT_ID
    assert assistant["graph_id"] == GRAPH
    assert call(acme.viewer, acme, "post", "assistants/search", {"graph_id": "other"}).json() == []
    for name in (ASSISTANT_ID, GRAPH):
        assert call(acme.viewer, acme, "get", f"assistants/{name}").json()["assistant_id"] == ASSISTANT_ID
    missing = call(acme.viewer, acme, "get", "assistants/other")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    # Another tenant's member: the tenant does not exist for them.
    assert call(globex.admin, acme, "post", "assistants/search", {}).status_code == 404


# --- Threads ---------------------------------------------------------------------------


def test_a_thread_comes_before_its_contract(acme):
    created = call(acme.agent, acme, "post", "threads", {"metadata": {"user": "u1", "graph_id": GRAPH}})
    assert created.status_code == 200
    thread = created.json()
    assert thread["status"] == "idle" and thread["values"] is None and thread["interrupts"] == {}
    assert thread["metadata"] == {"user": "u1", "graph_id": GRAPH, "assistant_id": ASSISTANT_ID}
    contract = contract_of(thread["thread_id"])
    assert (contract.status, contract.thread_metadata) == (ContractStatus.CREATED, {"user": "u1"})
    # A client's own id: a UUID (a thread is a contract).
    own = str(uuid.uuid4())
    assert call(acme.agent, acme, "post", "threads", {"thread_id": own}).json()["thread_id"] == own
    taken = call(acme.agent, acme, "post", "threads", {"thread_id": own})
    assert (taken.status_code, taken.json()["code"]) == (409, "thread_exists")
    again = call(acme.agent, acme, "post", "threads", {"thread_id": own, "if_exists": "do_nothing"})
    assert again.status_code == 200 and again.json()["thread_id"] == own


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"thread_id": "thread-1"}, "thread_id"),
        ({"ttl": {"ttl": 5, "strategy": "delete"}}, "ttl"),
        ({"metadata": {"graph_id": "another_graph"}}, "metadata.graph_id"),
        ({"metadata": "x"}, "metadata"),
        ({"if_exists": "replace"}, "if_exists"),
        ({"tenant": "globex"}, "tenant"),
    ],
)
def test_a_bad_thread_is_a_422_naming_the_field(acme, payload, field):
    response = call(acme.agent, acme, "post", "threads", payload)
    assert response.status_code == 422, response.content
    assert field in response.json()["fields"], response.json()


def test_a_viewer_may_read_threads_but_not_make_them(acme):
    assert call(acme.viewer, acme, "post", "threads", {}).status_code == 403
    assert call(acme.viewer, acme, "post", "threads/search", {}).status_code == 200


def test_the_whole_loop_on_one_thread(acme):
    thread_id, output = thread_with_contract(acme)
    pending = ReviewTask.objects.filter(contract_id=thread_id, status="pending")
    ids = interrupt_ids(output)
    assert set(ids) == {"legal", "finance"} and set(ids.values()) == set(pending.values_list("interrupt_id", flat=True))
    legal = pending.get(kind="legal")
    [shown] = [i for i in output["__interrupt__"] if i["id"] == ids["legal"]]
    # Untranslated: the payload as the graph produced it, with its schema.
    assert shown["value"] == legal.payload and shown["response_schema"] == legal.response_schema
    assert output["risk_score"] == legal.contract.risk_score and output["title"] == "MSA"

    thread = call(acme.viewer, acme, "get", f"threads/{thread_id}").json()
    assert thread["status"] == "interrupted"
    assert set(thread["interrupts"]) == {str(t.pk) for t in pending}  # keyed by review task

    state = call(acme.viewer, acme, "get", f"threads/{thread_id}/state?subgraphs=false").json()
    assert sorted(state["next"]) == ["finance_review", "legal_review"]
    assert [i["id"] for i in state["interrupts"]] == [ids["legal"], ids["finance"]]  # legal first, always
    assert {t["name"]: [i["id"] for i in t["interrupts"]] for t in state["tasks"]} == {
        "legal_review": [ids["legal"]],
        "finance_review": [ids["finance"]],
    }
    assert state["values"]["contract_text"] == HIGH_RISK_TEXT + " Customer shall also pay a one-off fee of USD 500,000."
    assert state["checkpoint"]["thread_id"] == thread_id and state["checkpoint"]["checkpoint_id"]

    decided = resume(acme.reviewer, acme, thread_id, {ids["legal"]: {"decision": "approve"}}, endpoint="runs/wait")
    assert decided.status_code == 200
    output = body(decided)
    assert [i["id"] for i in output["__interrupt__"]] == [ids["finance"]]  # still waiting on finance
    finished = resume(
        acme.reviewer2,
        acme,
        thread_id,
        {ids["finance"]: {"decision": "approve", "comment": "ok"}},
        endpoint="runs/wait",
    )
    output = body(finished)
    assert output["human_decision"] == "approved" and "__interrupt__" not in output
    assert call(acme.viewer, acme, "get", f"threads/{thread_id}").json()["status"] == "idle"

    # One system of record: the REST queue and the audit trail show the same decisions.
    task = acme.reviewer.client.get(acme.url(f"reviews/{legal.pk}/")).json()
    assert (task["status"], task["decided_by"], task["decision"]["decision"]) == (
        "resolved",
        "acme-reviewer",
        "approve",
    )
    assert [e["interface"] for e in task["history"] if e["action"] == "review.resolved"] == ["langgraph"]
    audit = AuditRecord.objects.filter(tenant=acme.tenant, action="review.resolved").values_list("interface", flat=True)
    assert list(audit) == ["langgraph", "langgraph"]
    # ... and the live queue: the events its websocket sends (and its catch-up reads).
    resolved = QueueEvent.objects.filter(tenant=acme.tenant, type="review.resolved").values_list("task_id", flat=True)
    assert set(resolved) == {t.pk for t in ReviewTask.objects.filter(contract_id=thread_id)}


def test_wait_answers_with_location_headers_relative_to_the_base_url(acme):
    thread_id = call(acme.agent, acme, "post", "threads", {}).json()["thread_id"]
    waited = call(
        acme.agent,
        acme,
        "post",
        f"threads/{thread_id}/runs/wait",
        {"assistant_id": GRAPH, "input": {"contract_text": LOW_RISK_TEXT, "title": "NDA"}},
    )
    run = Run.objects.get(contract_id=thread_id)
    assert waited["Content-Type"] == "application/json"
    assert waited["Location"] == f"/threads/{thread_id}/runs/{run.pk}/join"
    assert waited["Content-Location"] == f"/threads/{thread_id}/runs/{run.pk}"
    assert body(waited)["human_decision"] == "auto_approved"


def test_search_by_status_metadata_and_ids_with_pagination_headers(acme, globex):
    interrupted, _ = thread_with_contract(acme)
    idle = call(acme.agent, acme, "post", "threads", {"metadata": {"source": "other"}}).json()["thread_id"]
    thread_with_contract(globex)

    def search(**query):
        response = call(acme.viewer, acme, "post", "threads/search", query)
        assert response.status_code == 200, response.content
        return [t["thread_id"] for t in response.json()], response

    assert search(status="interrupted")[0] == [interrupted]
    assert search(status="idle")[0] == [idle]
    assert search(metadata={"graph_id": GRAPH})[0] == [idle, interrupted]  # newest first
    assert search(metadata={"assistant_id": ASSISTANT_ID, "source": "other"})[0] == [idle]
    assert search(metadata={"graph_id": "another"})[0] == []
    assert search(ids=[interrupted])[0] == [interrupted]
    assert search(sort_by="created_at", sort_order="asc")[0] == [interrupted, idle]
    page, response = search(limit=1)
    assert page == [idle]
    assert (response["X-Pagination-Total"], response["X-Pagination-Next"]) == ("2", "1")
    assert search(limit=1, offset=1)[0] == [interrupted]
    assert search(select=["thread_id", "status"])[1].json()[0] == {"thread_id": idle, "status": "idle"}
    assert call(acme.viewer, acme, "post", "threads/count", {"status": "interrupted"}).json() == 1
    assert call(acme.viewer, acme, "post", "threads/search", {"limit": 1000}).status_code == 422
    assert call(acme.viewer, acme, "post", "threads/search", {"values": {"title": "MSA"}}).status_code == 422


def test_metadata_patch_merges(acme):
    thread_id = call(acme.agent, acme, "post", "threads", {"metadata": {"a": 1}}).json()["thread_id"]
    patched = call(acme.agent, acme, "patch", f"threads/{thread_id}", {"metadata": {"b": [2]}}).json()
    assert patched["metadata"] == {"a": 1, "b": [2], "graph_id": GRAPH, "assistant_id": ASSISTANT_ID}
    assert call(acme.viewer, acme, "patch", f"threads/{thread_id}", {"metadata": {"c": 3}}).status_code == 403


def test_another_tenants_thread_is_exactly_a_missing_thread(acme, globex):
    theirs, _ = thread_with_contract(globex)
    for path, method, payload in [
        (f"threads/{theirs}", "get", None),
        (f"threads/{theirs}/state", "get", None),
        (f"threads/{theirs}/runs", "get", None),
        (f"threads/{theirs}", "patch", {"metadata": {"x": 1}}),
        (f"threads/{theirs}/runs", "post", {"assistant_id": GRAPH, "command": {"resume": {"decision": "approve"}}}),
        (f"threads/{theirs}/state", "post", {"values": None, "as_node": "__end__"}),
    ]:
        absent = str(uuid.uuid4())
        foreign = call(acme.admin, acme, method, path, payload)
        missing = call(acme.admin, acme, method, path.replace(theirs, absent), payload)
        assert foreign.status_code == missing.status_code == 404, path
        # The same body, but for the id it names.
        assert foreign.content.decode().replace(theirs, "<id>") == missing.content.decode().replace(absent, "<id>")
    assert contract_of(theirs).status == ContractStatus.WAITING_FOR_REVIEW


# --- Resumes ---------------------------------------------------------------------------


def test_an_answered_or_unknown_interrupt_is_a_409_listing_the_pending_ones(acme):
    thread_id, output = thread_with_contract(acme)
    ids = interrupt_ids(output)
    assert resume(acme.reviewer, acme, thread_id, {ids["legal"]: {"decision": "approve"}}).status_code == 200
    again = resume(acme.reviewer, acme, thread_id, {ids["legal"]: {"decision": "approve"}})
    assert again.status_code == 409
    assert again.json()["code"] == "already_resolved" and again.json()["pending_ids"] == [ids["finance"]]
    unknown = resume(acme.reviewer2, acme, thread_id, {"0" * 32: {"decision": "approve"}})
    assert (unknown.status_code, unknown.json()["code"], unknown.json()["pending_ids"]) == (
        409,
        "unknown_interrupt",
        [ids["finance"]],
    )
    # One unknown id refuses the whole command: the finance answer with it is not recorded.
    mixed = resume(
        acme.reviewer2, acme, thread_id, {ids["finance"]: {"decision": "approve"}, "f" * 32: {"decision": "approve"}}
    )
    assert mixed.status_code == 409
    assert ReviewTask.objects.get(interrupt_id=ids["finance"]).status == "pending"


def test_a_malformed_answer_is_a_422_naming_the_field(acme):
    thread_id, output = thread_with_contract(acme)
    legal = interrupt_ids(output)["legal"]
    for answer, field in [
        ({legal: {"decision": "maybe"}}, f"command.resume.{legal}.decision"),
        ({legal: {"decision": "amend"}}, f"command.resume.{legal}.amendments"),
        ({legal: {"decision": "approve", "decided_by": 1}}, f"command.resume.{legal}.decided_by"),
        ({legal: "approve"}, f"command.resume.{legal}"),
        ("approve", "command.resume"),
        ({}, "command.resume"),
        ({"decision": "maybe"}, "command.resume.decision"),
    ]:
        response = resume(acme.reviewer, acme, thread_id, answer)
        assert response.status_code == 422, (answer, response.content)
        assert field in response.json()["fields"], (answer, response.json())
    assert not ReviewTask.objects.filter(contract_id=thread_id, status="resolved").exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"command": {"goto": "finalize", "resume": {}}}, "command"),
        ({"command": {"update": {"risk_score": 0}, "resume": {}}}, "command"),
        ({"input": {"contract_text": "x", "title": "t"}, "command": {"resume": {}}}, "command"),
        ({}, "input"),
        ({"input": {"text": "x"}}, "input"),
        ({"input": {"contract_text": "", "title": "t"}}, "input.contract_text"),
        ({"interrupt_before": ["legal_review"], "input": {"contract_text": "x", "title": "t"}}, "interrupt_before"),
        ({"multitask_strategy": "rollback", "command": {"resume": {"decision": "approve"}}}, "multitask_strategy"),
        ({"config": {"configurable": {"risk_threshold": 1}}, "command": {"resume": {"decision": "approve"}}}, "config"),
        ({"stream_mode": "everything", "command": {"resume": {"decision": "approve"}}}, "stream_mode"),
    ],
)
def test_a_bad_run_is_a_422_naming_the_field(acme, payload, field):
    thread_id = call(acme.agent, acme, "post", "threads", {}).json()["thread_id"]
    response = call(acme.admin, acme, "post", f"threads/{thread_id}/runs", {"assistant_id": GRAPH, **payload})
    assert response.status_code == 422, response.content
    assert any(name == field or name.startswith(f"{field}.") for name in response.json()["fields"]), response.json()


def test_a_bare_value_answers_the_one_interrupt_the_caller_may_decide(acme):
    thread_id, output = thread_with_contract(acme)
    ids = interrupt_ids(output)
    # reviewer2 approves finance and is a reviewer: both are theirs, so a bare value is ambiguous.
    ambiguous = resume(acme.reviewer2, acme, thread_id, {"decision": "approve"})
    assert (ambiguous.status_code, ambiguous.json()["code"], ambiguous.json()["pending_ids"]) == (
        409,
        "ambiguous",
        [ids["legal"], ids["finance"]],
    )
    # reviewer may only decide legal: the bare value is that one.
    assert resume(acme.reviewer, acme, thread_id, {"decision": "reject", "comment": "no"}).status_code == 200
    legal = ReviewTask.objects.get(interrupt_id=ids["legal"])
    assert (legal.status, legal.decision["decision"], legal.decided_by_id) == (
        "resolved",
        "reject",
        acme.reviewer.user.pk,
    )
    # Now nothing pending is reviewer's.
    assert resume(acme.reviewer, acme, thread_id, {"decision": "approve"}).status_code == 403


def test_roles_that_may_not_decide_get_403(acme):
    thread_id, output = thread_with_contract(acme)
    legal = interrupt_ids(output)["legal"]
    for member in (acme.viewer, acme.agent):
        assert resume(member, acme, thread_id, {legal: {"decision": "approve"}}).status_code == 403
    # A reviewer outside the finance team may not decide finance.
    assert (
        resume(acme.reviewer, acme, thread_id, {interrupt_ids(output)["finance"]: {"decision": "approve"}}).status_code
        == 403
    )
    assert not ReviewTask.objects.filter(contract_id=thread_id, status="resolved").exists()


def test_four_eyes_holds_through_the_sdk(acme):
    thread_id, output = thread_with_contract(acme, text=CRITICAL_RISK_TEXT)
    assert (
        resume(acme.admin, acme, thread_id, {interrupt_ids(output)["legal"]: {"decision": "approve"}}).status_code
        == 200
    )
    signoff = interrupt_ids(
        call(acme.viewer, acme, "get", f"threads/{thread_id}/state").json()
        | {"__interrupt__": call(acme.viewer, acme, "get", f"threads/{thread_id}/state").json()["interrupts"]}
    )["signoff"]
    same = resume(acme.admin, acme, thread_id, {signoff: {"decision": "approve"}})
    assert (same.status_code, same.json()["code"]) == (403, "four_eyes")
    assert resume(acme.senior, acme, thread_id, {signoff: {"decision": "approve"}}).status_code == 200


def test_a_claim_by_someone_else_is_a_409(acme):
    thread_id, output = thread_with_contract(acme)
    legal = ReviewTask.objects.get(interrupt_id=interrupt_ids(output)["legal"])
    assert acme.senior.client.post(acme.url(f"reviews/{legal.pk}/claim/")).status_code == 200
    claimed = resume(acme.reviewer, acme, thread_id, {legal.interrupt_id: {"decision": "approve"}})
    assert claimed.status_code == 409 and claimed.json()["claimed_by"] == "acme-senior"


def test_if_match_binds_the_decision_to_what_the_client_saw(acme):
    thread_id, output = thread_with_contract(acme)
    [legal] = [i for i in output["__interrupt__"] if i["value"]["kind"] == "legal"]
    stale = resume(
        acme.reviewer, acme, thread_id, {legal["id"]: {"decision": "approve"}}, HTTP_IF_MATCH='"' + "a" * 64 + '"'
    )
    assert (stale.status_code, stale.json()["code"]) == (409, "stale_digest")
    fresh = resume(
        acme.reviewer,
        acme,
        thread_id,
        {legal["id"]: {"decision": "approve"}},
        HTTP_IF_MATCH=f'"{legal["payload_digest"]}"',
    )
    assert fresh.status_code == 200


def test_an_idempotency_key_replays_the_run(acme):
    thread_id, output = thread_with_contract(acme)
    answer = {interrupt_ids(output)["legal"]: {"decision": "approve"}}
    first = resume(acme.reviewer, acme, thread_id, answer, HTTP_IDEMPOTENCY_KEY="k-1")
    replay = resume(acme.reviewer, acme, thread_id, answer, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == replay.status_code == 200
    assert first.json()["run_id"] == replay.json()["run_id"]
    assert AuditRecord.objects.filter(tenant=acme.tenant, action="review.resolved").count() == 1
    other = resume(
        acme.reviewer,
        acme,
        thread_id,
        {interrupt_ids(output)["finance"]: {"decision": "approve"}},
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")


def test_a_retried_run_without_a_thread_makes_one_thread_and_gets_its_run_back(acme):
    payload = {"assistant_id": GRAPH, "input": {"contract_text": HIGH_RISK_TEXT, "title": "Retried"}}
    first = call(acme.agent, acme, "post", "runs", payload, HTTP_IDEMPOTENCY_KEY="stateless-1")
    retry = call(acme.agent, acme, "post", "runs", payload, HTTP_IDEMPOTENCY_KEY="stateless-1")
    assert first.status_code == retry.status_code == 200
    assert retry.json()["run_id"] == first.json()["run_id"]
    assert retry.json()["thread_id"] == first.json()["thread_id"]
    waited = call(acme.agent, acme, "post", "runs/wait", payload, HTTP_IDEMPOTENCY_KEY="stateless-2")
    waited_again = call(acme.agent, acme, "post", "runs/wait", payload, HTTP_IDEMPOTENCY_KEY="stateless-2")
    output, replayed = body(waited), body(waited_again)  # a streamed body reads once
    assert "__interrupt__" in output and replayed == output
    # Two requests that made a thread each, two retries that made none.
    assert Contract.objects.filter(tenant=acme.tenant).count() == 2
    assert Run.objects.filter(tenant=acme.tenant).count() == 2


def test_an_in_flight_run_queues_a_resume_unless_the_client_asks_to_reject(acme):
    thread_id, output = thread_with_contract(acme)
    ids = interrupt_ids(output)
    # A decision recorded, its drive not run yet: the thread is busy.
    queued = call(
        acme.reviewer,
        acme,
        "post",
        f"threads/{thread_id}/runs",
        {"assistant_id": GRAPH, "command": {"resume": {ids["legal"]: {"decision": "approve"}}}},
        drive=False,
    )
    assert queued.json()["status"] == "pending"
    assert call(acme.viewer, acme, "get", f"threads/{thread_id}").json()["status"] == "busy"
    rejected = call(
        acme.reviewer2,
        acme,
        "post",
        f"threads/{thread_id}/runs",
        {
            "assistant_id": GRAPH,
            "multitask_strategy": "reject",
            "command": {"resume": {ids["finance"]: {"decision": "approve"}}},
        },
        drive=False,
    )
    assert (rejected.status_code, rejected.json()["code"]) == (409, "multitask_reject")
    # The default (enqueue) records it behind the first; one drive applies both.
    enqueued = resume(acme.reviewer2, acme, thread_id, {ids["finance"]: {"decision": "approve"}}, endpoint="runs/wait")
    assert body(enqueued)["human_decision"] == "approved"
    run = Run.objects.get(pk=queued.json()["run_id"])
    assert call(acme.viewer, acme, "get", f"threads/{thread_id}/runs/{run.pk}").json()["status"] == "success"


def test_input_is_once_per_thread_and_only_from_submitters(acme):
    thread_id, _ = thread_with_contract(acme)
    again = call(
        acme.agent,
        acme,
        "post",
        f"threads/{thread_id}/runs",
        {"assistant_id": GRAPH, "input": {"contract_text": HIGH_RISK_TEXT, "title": "again"}},
    )
    assert (again.status_code, again.json()["code"]) == (409, "input_given")
    fresh = call(acme.agent, acme, "post", "threads", {}).json()["thread_id"]
    viewer = call(
        acme.viewer,
        acme,
        "post",
        f"threads/{fresh}/runs",
        {"assistant_id": GRAPH, "input": {"contract_text": HIGH_RISK_TEXT, "title": "v"}},
    )
    assert viewer.status_code == 403


def test_a_missing_thread_is_made_for_the_run_only_when_asked(acme):
    own = str(uuid.uuid4())
    payload = {"assistant_id": GRAPH, "input": {"contract_text": LOW_RISK_TEXT, "title": "NDA"}}
    assert call(acme.agent, acme, "post", f"threads/{own}/runs", payload).status_code == 404
    made = call(acme.agent, acme, "post", f"threads/{own}/runs", {**payload, "if_not_exists": "create"})
    assert made.status_code == 200 and made.json()["thread_id"] == own
    stateless = call(acme.agent, acme, "post", "runs/wait", payload)
    assert body(stateless)["human_decision"] == "auto_approved"
    resumed = call(
        acme.reviewer, acme, "post", "runs", {"assistant_id": GRAPH, "command": {"resume": {"decision": "approve"}}}
    )
    assert resumed.status_code == 400 and "thread_id" in resumed.json()["detail"]


def test_runs_list_get_and_cancel(acme):
    thread_id, output = thread_with_contract(acme)
    resume(acme.reviewer, acme, thread_id, {interrupt_ids(output)["legal"]: {"decision": "approve"}})
    runs = call(acme.viewer, acme, "get", f"threads/{thread_id}/runs").json()
    assert [(r["status"], r["kwargs"].get("input")) for r in runs] == [("success", None), ("success", {"title": "MSA"})]
    assert call(acme.viewer, acme, "get", f"threads/{thread_id}/runs?status=pending").json() == []
    run_id = runs[0]["run_id"]
    assert call(acme.viewer, acme, "get", f"threads/{thread_id}/runs/{run_id}").json()["run_id"] == run_id
    joined = call(acme.viewer, acme, "get", f"threads/{thread_id}/runs/{run_id}/join")
    assert [i["id"] for i in body(joined)["__interrupt__"]] == [interrupt_ids(output)["finance"]]
    cancel = call(acme.admin, acme, "post", f"threads/{thread_id}/runs/{run_id}/cancel")
    assert (cancel.status_code, cancel.json()["code"]) == (409, "run_ended")
    assert call(acme.viewer, acme, "post", f"threads/{thread_id}/runs/{run_id}/cancel").status_code == 403
    assert call(acme.viewer, acme, "get", f"threads/{thread_id}/runs/{uuid.uuid4()}").status_code == 404


def test_stream_sends_metadata_then_events_updates_and_values(acme):
    thread_id = call(acme.agent, acme, "post", "threads", {}).json()["thread_id"]
    streamed = call(
        acme.agent,
        acme,
        "post",
        f"threads/{thread_id}/runs/stream",
        {
            "assistant_id": GRAPH,
            "input": {"contract_text": HIGH_RISK_TEXT, "title": "MSA"},
            "stream_mode": ["events", "updates", "values"],
        },
    )
    assert streamed["Content-Type"].startswith("text/event-stream")
    assert streamed["Cache-Control"] == "no-store" and streamed["X-Accel-Buffering"] == "no"
    found = events(streamed)
    assert found[0][0] == "metadata" and found[0][1]["run_id"] == streamed["Content-Location"].rsplit("/", 1)[1]
    nodes = [
        data["metadata"]["langgraph_node"]
        for event, data in found
        if event == "events" and data["event"] == "on_chain_start" and "langgraph_node" in data["metadata"]
    ]
    assert nodes == ["analyze", "legal_review"]
    [update] = [data for event, data in found if event == "updates"]
    [values] = [data for event, data in found if event == "values"]
    assert [i["value"]["kind"] for i in update["__interrupt__"]] == ["legal"]
    assert values["__interrupt__"] == update["__interrupt__"] and values["risk_score"] > 0.7


def test_a_stream_asked_for_with_accept_text_event_stream_answers_errors_in_json(acme):
    api = client(acme.viewer)
    refused = api.post(
        url(acme, f"threads/{uuid.uuid4()}/runs/stream"),
        {"assistant_id": GRAPH, "input": {}},
        format="json",
        HTTP_ACCEPT="text/event-stream",
    )
    assert refused.status_code in (403, 404, 422)
    assert refused["Content-Type"] == "application/json" and "detail" in refused.json()


def test_resolve_is_a_tenant_admins_cancel(acme):
    thread_id, _ = thread_with_contract(acme)
    end = {"values": None, "as_node": "__end__"}
    assert call(acme.reviewer, acme, "post", f"threads/{thread_id}/state", end).status_code == 403
    for bad in ({"values": {"risk_score": 0}, "as_node": "__end__"}, {"values": None, "as_node": "finalize"}):
        assert call(acme.admin, acme, "post", f"threads/{thread_id}/state", bad).status_code == 422
    resolved = call(acme.admin, acme, "post", f"threads/{thread_id}/state", end)
    assert resolved.status_code == 200 and resolved.json()["checkpoint"]["thread_id"] == thread_id
    assert contract_of(thread_id).status == ContractStatus.CANCELLED
    assert set(ReviewTask.objects.filter(contract_id=thread_id).values_list("status", flat=True)) == {"cancelled"}
    assert AuditRecord.objects.get(tenant=acme.tenant, action="contract.cancelled").interface == "langgraph"
    again = call(acme.admin, acme, "post", f"threads/{thread_id}/state", end)
    assert again.status_code == 409


def test_errors_are_json_with_detail_even_outside_the_views(acme):
    unroutable = client(acme.viewer).get("/langgraph/acme/threads/not-a-uuid")
    assert unroutable.status_code == 404
    assert unroutable.json() == {"detail": "Not found.", "code": "not_found"}
    not_allowed = call(acme.admin, acme, "delete", f"threads/{uuid.uuid4()}")
    assert not_allowed.status_code == 405 and "detail" in not_allowed.json()
    parse = client(acme.admin).post(url(acme, "threads/search"), "{", content_type="application/json")
    assert (parse.status_code, parse.json()["code"]) == (400, "parse_error")


@override_settings(CORS_ALLOWED_ORIGINS=["https://inbox.example.com"])
def test_cors_for_configured_origins_on_the_langgraph_prefixes_only(acme):
    api = client(None)
    preflight = api.options(
        "/langgraph/acme/info",
        HTTP_ORIGIN="https://inbox.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type,x-api-key",
        HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK="true",
    )
    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == "https://inbox.example.com"
    assert {"x-api-key", "authorization", "content-type", "last-event-id"} <= {
        h.strip() for h in preflight["Access-Control-Allow-Headers"].split(",")
    }
    assert preflight["Access-Control-Allow-Private-Network"] == "true"
    answer = client(acme.viewer).post(
        url(acme, "threads/search", "agent-inbox"), {}, format="json", HTTP_ORIGIN="https://inbox.example.com"
    )
    assert answer["Access-Control-Allow-Origin"] == "https://inbox.example.com"
    assert {"Location", "Content-Location", "X-Pagination-Total", "X-Pagination-Next"} <= {
        h.strip() for h in answer["Access-Control-Expose-Headers"].split(",")
    }
    # An error a browser client must be able to read carries them too.
    assert "Access-Control-Allow-Origin" in client(None).post(
        url(acme, "threads/search"), {}, format="json", HTTP_ORIGIN="https://inbox.example.com"
    )
    stranger = api.options(
        "/langgraph/acme/info", HTTP_ORIGIN="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"
    )
    assert "Access-Control-Allow-Origin" not in stranger
    rest = api.options(
        acme.url("reviews/"), HTTP_ORIGIN="https://inbox.example.com", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"
    )
    assert "Access-Control-Allow-Origin" not in rest
