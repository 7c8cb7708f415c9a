"""A worker SIGKILLed at every step boundary of the graph, and then, without anyone
running a command, every contract reaches the state it should, each decision applied
exactly once.

Real processes on PostgreSQL: a live server takes the API calls; worker A runs with
HITL_TEST_KILL_AT and kills itself at that point of a run (contracts/graph/faults.py);
the points are a run's durable writes and, since a run checkpoints only when it
stops, the starts of its nodes (what happened in memory is lost with the process);
worker B, started after A is dead, runs the scheduler, which finds the contract A left
behind (its run lease runs out) and re-drives it from its checkpoint."""

from __future__ import annotations

import signal
from collections import Counter
from dataclasses import dataclass

import pytest

from contracts.graph.runner import thread_snapshot
from contracts.models import Contract
from reviews.models import QueueEvent, ReviewTask
from tenants.models import AuditRecord
from tests.factories import CRITICAL_RISK_TEXT, HIGH_RISK_LARGE_PAYMENT_TEXT, HIGH_RISK_TEXT
from tests.live import processes
from tests.support import fast_passwords, postgresql_only, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), postgresql_only, pytest.mark.timeout(240)]


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    fast_passwords(settings)


@dataclass(frozen=True)
class Scenario:
    kill_at: str
    text: str
    # Reviews given over the API, in order: (kind, member of the world).
    reviews: tuple[tuple[str, str], ...]
    # How many reviews are given before worker A is expected to die (0: in the first run).
    dies_after_reviews: int
    outcome: str


SCENARIOS = {
    # A run checkpoints when it stops (durability "exit"): killed while analysing, it
    # leaves nothing behind, and the first run starts again from the input.
    "first run, after analyze": Scenario("before-node:legal_review", HIGH_RISK_LARGE_PAYMENT_TEXT,
                                         (("legal", "reviewer"), ("finance", "reviewer2")), 0, "approved"),
    # The first run's stop is checkpointed, its questions not yet written, nothing
    # committed (a pass commits once its run returns): the first run starts again.
    "first run, at its checkpoint": Scenario("after-checkpoint:1", HIGH_RISK_TEXT, (("legal", "reviewer"),), 0,
                                             "approved"),
    # Both questions durable, the review tasks not recorded yet.
    "first run, before its outcome": Scenario("before-outcome", HIGH_RISK_LARGE_PAYMENT_TEXT,
                                              (("legal", "reviewer"), ("finance", "reviewer2")), 0, "approved"),
    # The legal answer consumed in memory, `finalize` about to run: nothing durable
    # since the question, so the answer is sent again, and applied once.
    "legal review": Scenario("before-node:finalize", HIGH_RISK_TEXT, (("legal", "reviewer"),), 1, "approved"),
    # Finance answered first while legal still waits: its result written, not committed,
    # so the answer is sent again, and applied once.
    "finance review": Scenario("after-writes:finance_review", HIGH_RISK_LARGE_PAYMENT_TEXT,
                               (("finance", "reviewer2"), ("legal", "reviewer")), 1, "approved"),
    # Critical risk: the legal approval asks for a second signature; the sign-off is
    # consumed and the run dies before `finalize`.
    "sign-off": Scenario("before-node:finalize", CRITICAL_RISK_TEXT,
                         (("legal", "senior"), ("signoff", "admin")), 2, "approved"),
    # The decision final in the thread (its checkpoint durable), nothing recorded yet:
    # the resume's outcome, the worker's second.
    "finalize": Scenario("before-outcome#2", HIGH_RISK_TEXT, (("legal", "reviewer"),), 1, "approved"),
}




def _pending(contract_id, kind: str) -> ReviewTask | None:
    return ReviewTask.objects.filter(contract_id=contract_id, kind=kind, status="pending").first()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_worker_killed_at_a_step_boundary_heals_without_a_command(acme, name):
    scenario = SCENARIOS[name]
    with processes() as running:
        server = running.server()
        doomed = running.worker("--no-scheduler", HITL_TEST_KILL_AT=scenario.kill_at)
        with server.client(acme.agent.token) as agent:
            created = agent.post(acme.url("contracts/"), json={"title": name, "text": scenario.text})
        assert created.status_code == 202, created.text
        contract_id = created.json()["id"]

        def review(kind: str, member: str) -> None:
            task = wait_until(lambda: _pending(contract_id, kind), what=f"the {kind} task", bound=90)
            with server.client(getattr(acme, member).token) as client:
                answer = client.post(acme.url(f"reviews/{task.pk}/resume/"), json={"decision": "approve"})
            assert answer.status_code == 202, answer.text

        for kind, member in scenario.reviews[: scenario.dies_after_reviews]:
            review(kind, member)
        # Worker A dies at its point: SIGKILL, nothing cleaned up, its lease left held.
        assert doomed.wait_exit() == -signal.SIGKILL, doomed.log_text()

        # Nobody runs a command: a fresh worker's scheduler finds what A left behind.
        rescuer = running.worker()
        for kind, member in scenario.reviews[scenario.dies_after_reviews:]:
            review(kind, member)
        contract = wait_until(
            lambda: Contract.objects.filter(pk=contract_id, status=scenario.outcome).first(),
            what=f"the contract to be {scenario.outcome}", bound=90,
        )
        assert rescuer.alive, rescuer.log_text()

    # Each decision applied exactly once: once in the thread, once in the record.
    kinds = [kind for kind, _ in scenario.reviews]
    snapshot = thread_snapshot(contract.thread_id)
    assert snapshot.finished and snapshot.values["human_decision"] == scenario.outcome
    assert sorted(entry["kind"] for entry in snapshot.values["history"]) == sorted(kinds)
    assert sorted(entry["kind"] for entry in contract.decision_history) == sorted(kinds)
    tasks = list(ReviewTask.objects.filter(contract=contract))
    assert sorted(t.kind for t in tasks) == sorted(kinds)  # one task per question, none doubled
    assert all(t.status == "resolved" and t.applied_at is not None for t in tasks)
    resolved = Counter(AuditRecord.objects.filter(action="review.resolved").values_list("target_id", flat=True))
    assert resolved == Counter(str(t.pk) for t in tasks)
    assert QueueEvent.objects.filter(type="contract.completed", contract=contract).count() == 1
    assert (contract.run_lease_owner, contract.run_attempts, contract.last_error) == ("", 0, "")
