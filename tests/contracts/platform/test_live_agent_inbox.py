"""Agent Inbox's exact calls, made by a Node script with @langchain/langgraph-sdk (the
client Agent Inbox uses, installed by .ci/setup from tests/js/package-lock.json) against
a live server and real workers: list interrupted threads by graph_id, read
thread.interrupts, answer with [HumanResponse] through runs.stream in "events" mode,
ignore through runs.create, resolve through updateState."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from langgraph_sdk import get_sync_client

from contracts.models import Contract
from reviews.models import ReviewTask
from tenants.models import AuditRecord
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT, HIGH_RISK_TEXT
from tests.live import processes
from tests.support import PROJECT_DIR, postgresql_only, wait_until

pytestmark = [postgresql_only, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

JS = PROJECT_DIR / "tests" / "js"
GRAPH = "contract_review"


def agent_inbox(server, world, member, *steps: dict) -> list:
    """Run the steps as Agent Inbox would, as `member`; one result per step."""
    node = shutil.which("node")
    assert node, "Node.js is needed for the Agent Inbox client test"
    assert (JS / "node_modules" / "@langchain" / "langgraph-sdk").is_dir(), (
        "the JS client is not installed: run bash .ci/setup (npm ci in tests/js)"
    )
    plan = {
        "url": f"{server.http}/agent-inbox/{world.slug}",
        "key": member.token,
        "graphId": GRAPH,
        "steps": list(steps),
    }
    done = subprocess.run(
        [node, str(JS / "agent_inbox.mjs"), json.dumps(plan)], cwd=JS, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])["results"]


def submit(server, world, text: str, title: str) -> str:
    agent = get_sync_client(url=f"{server.http}/langgraph/{world.slug}", api_key=world.agent.token)
    thread = agent.threads.create()
    assert agent.runs.wait(thread["thread_id"], GRAPH, input={"contract_text": text, "title": title})["__interrupt__"]
    return thread["thread_id"]


def test_agent_inbox_lists_answers_ignores_and_resolves(acme, globex):
    with processes() as running:
        server = running.server()
        running.worker()
        parallel = submit(server, acme, HIGH_RISK_LARGE_PAYMENT_TEXT, "Supply")
        single = submit(server, acme, HIGH_RISK_TEXT, "MSA")
        doomed = submit(server, acme, HIGH_RISK_TEXT, "Doomed")
        tasks = {
            (str(t.contract_id), t.kind): str(t.pk) for t in ReviewTask.objects.filter(contract__tenant=acme.tenant)
        }

        info, listed = agent_inbox(
            server, acme, acme.reviewer2, {"op": "info"}, {"op": "search", "status": "interrupted"}
        )
        assert info["status"] == 200 and info["body"]["host"]["tenant_id"] is None
        # One thread per review task, parallel reviews included, each a HumanInterrupt.
        assert {t["thread_id"] for t in listed} == set(tasks.values())
        for thread in listed:
            [interrupt] = thread["interrupts"]
            assert interrupt["action_request"]["action"] == f"{thread['metadata']['kind']}_review"
            assert interrupt["config"]["allow_accept"] is True
            assert "**Risk score:**" in interrupt["description"]

        accepted, ignored, responded = agent_inbox(
            server,
            acme,
            acme.reviewer2,
            {"op": "respond", "threadId": tasks[parallel, "legal"], "answer": {"type": "accept"}},
            {"op": "ignore", "threadId": tasks[parallel, "finance"]},
            {
                "op": "respond",
                "threadId": tasks[single, "legal"],
                "answer": {"type": "response", "text": "Cap the liability, then resend."},
            },
        )
        assert accepted["errors"] == [] and "legal_review" in accepted["nodes"], accepted
        assert accepted["events"][0] == "metadata"
        assert ignored["status"] in ("pending", "running", "success"), ignored
        assert responded["errors"] == [] and responded["status_after"] == "idle", responded

        (refused,) = agent_inbox(server, acme, acme.reviewer, {"op": "resolve", "threadId": tasks[doomed, "legal"]})
        assert refused["error"]["status"] == 403
        resolved, after = agent_inbox(
            server,
            acme,
            acme.admin,
            {"op": "resolve", "threadId": tasks[doomed, "legal"]},
            {"op": "search", "status": "interrupted"},
        )
        assert "error" not in resolved, resolved
        assert after == []
        # Another tenant's member sees none of it.
        [stranger] = agent_inbox(server, acme, globex.admin, {"op": "search", "status": "interrupted"})
        assert stranger["error"]["status"] == 404
        outcome = {parallel: "rejected", single: "rejected", doomed: "cancelled"}
        wait_until(
            lambda: {str(c.pk): c.status for c in Contract.objects.filter(tenant=acme.tenant)} == outcome,
            what="every answer applied by the workers",
        )

    decisions = {
        (str(t.contract_id), t.kind): (t.status, (t.decision or {}).get("decision"), (t.decision or {}).get("comment"))
        for t in ReviewTask.objects.filter(contract__tenant=acme.tenant)
    }
    assert decisions[parallel, "legal"] == ("resolved", "approve", "")
    assert decisions[parallel, "finance"] == ("resolved", "reject", "")
    assert decisions[single, "legal"] == ("resolved", "reject", "Cap the liability, then resend.")
    assert decisions[doomed, "legal"][0] == "cancelled"
    interfaces = set(
        AuditRecord.objects.filter(
            tenant=acme.tenant, action__in=["review.resolved", "contract.cancelled"]
        ).values_list("interface", flat=True)
    )
    assert interfaces == {"agent-inbox"}
