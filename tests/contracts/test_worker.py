"""The production task path: requests enqueue to the database backend, real worker
processes run the graph. Nothing here runs in the test process except the API calls.
Both workers are covered: django-tasks-db's polling `db_worker` and the product's
`run_worker` (the same loop, woken by NOTIFY)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from django_tasks_db.models import DBTaskResult

from contracts.graph.runner import thread_snapshot
from contracts.models import Contract
from reviews.models import ReviewTask
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT, HIGH_RISK_TEXT, LARGE_PAYMENT_TEXT, LOW_RISK_TEXT
from tests.support import (
    HANG_GUARD_SECONDS,
    PROJECT_DIR,
    PYTHON,
    child_env,
    fast_passwords,
    postgresql_only,
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), postgresql_only]

DATABASE_BACKEND = {"default": {"BACKEND": "contracts.queue_backend.QueueBackend"}}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    fast_passwords(settings)


@pytest.fixture
def database_tasks(settings) -> None:
    """This process enqueues to the database backend, as a web process does in
    production. django_tasks resets its cached backends on setting_changed."""
    settings.TASKS = DATABASE_BACKEND


WORKER_COMMANDS = pytest.mark.parametrize("command", ["db_worker", "run_worker"])


@contextmanager
def worker_process(command: str, log: Path) -> Iterator[subprocess.Popen]:
    """A real `manage.py <command>` on the test database, stopped however the test ends."""
    with log.open("w") as out:
        worker = subprocess.Popen(
            [PYTHON, "manage.py", command, "--queue-name", "*", "--interval", "0.05"]
            + ["--no-startup-delay", "--no-reload"],
            cwd=PROJECT_DIR,
            env=child_env(tasks_backend="database"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield worker
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=HANG_GUARD_SECONDS)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def submit(world, text: str, title: str = "MSA") -> str:
    response = world.agent.client.post(world.url("contracts/"), {"title": title, "text": text}, format="json")
    # 202 and no waiting: the request only enqueued, the graph runs in a worker.
    assert response.status_code == 202, response.content
    return response.json()["id"]


def resume(member, world, task_id, body: dict) -> None:
    response = member.client.post(world.url(f"reviews/{task_id}/resume/"), body, format="json")
    assert response.status_code == 202, response.content


def contract_status(contract_id: str) -> str:
    return Contract.objects.values_list("status", flat=True).get(pk=contract_id)


def queue_drained() -> bool:
    # A decision that lands while its contract's drive is still running is applied by
    # that drive; the drive queued for it then runs later and finds nothing to do.
    return not DBTaskResult.objects.exclude(status__in=["SUCCESSFUL", "FAILED"]).exists()


def pending_task(contract_id: str, kind: str) -> ReviewTask | None:
    return ReviewTask.objects.filter(contract_id=contract_id, kind=kind, status="pending").first()


@WORKER_COMMANDS
def test_worker_runs_submit_and_resume(acme, database_tasks, tmp_path, command):
    log = tmp_path / "worker.log"
    with worker_process(command, log) as worker:
        contract_id = submit(acme, HIGH_RISK_TEXT)
        assert DBTaskResult.objects.count() == 1

        task = wait_until(lambda: pending_task(contract_id, "legal"), what="the worker to create the legal task")
        assert contract_status(contract_id) == "waiting_for_review"

        resume(acme.reviewer, acme, task.pk, {"decision": "approve", "comment": "via the worker"})
        wait_until(lambda: contract_status(contract_id) == "approved", what="the worker to apply the decision")
        wait_until(queue_drained, what="the worker to finish every queued run")
        assert worker.poll() is None, log.read_text()

    contract = Contract.objects.get(pk=contract_id)
    assert [(h["kind"], h["comment"]) for h in contract.decision_history] == [("legal", "via the worker")]
    assert thread_snapshot(contract.thread_id).finished
    results = list(DBTaskResult.objects.values_list("status", flat=True))
    assert results == ["SUCCESSFUL", "SUCCESSFUL"], log.read_text()


@WORKER_COMMANDS
def test_two_workers_finish_every_contract_without_duplicate_tasks(acme, database_tasks, tmp_path, command):
    # (text, the review kinds it needs, final status)
    plan = [
        (HIGH_RISK_TEXT, {"legal"}, "approved"),
        (HIGH_RISK_TEXT, {"legal"}, "rejected"),
        (HIGH_RISK_LARGE_PAYMENT_TEXT, {"legal", "finance"}, "approved"),
        (HIGH_RISK_LARGE_PAYMENT_TEXT, {"legal", "finance"}, "approved"),
        (LARGE_PAYMENT_TEXT, {"finance"}, "approved"),
        (LOW_RISK_TEXT, set(), "auto_approved"),
    ]
    # legal goes to the reviewers' team, finance to the finance approver (reviewer2).
    decider = {"legal": acme.reviewer, "finance": acme.reviewer2}

    with ExitStack() as stack:
        logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
        workers = [stack.enter_context(worker_process(command, log)) for log in logs]
        # Both poll before any work exists, so both can take part.
        for log in logs:
            wait_until(lambda: "Starting worker" in log.read_text(), what=f"{log.name} to start")
        contract_ids = [submit(acme, text, title=f"C{i}") for i, (text, _, _) in enumerate(plan)]

        for contract_id, (_, kinds, final) in zip(contract_ids, plan):
            for kind in sorted(kinds):
                task = wait_until(lambda: pending_task(contract_id, kind), what=f"a {kind} task for {contract_id}")
                decision = "reject" if final == "rejected" else "approve"
                resume(decider[kind], acme, task.pk, {"decision": decision})

        for contract_id, (_, _, final) in zip(contract_ids, plan):
            wait_until(lambda: contract_status(contract_id) == final, what=f"{contract_id} to become {final}")
        wait_until(queue_drained, what="the workers to finish every queued run")
        assert all(worker.poll() is None for worker in workers)

    for contract_id, (_, kinds, final) in zip(contract_ids, plan):
        contract = Contract.objects.get(pk=contract_id)
        tasks = list(ReviewTask.objects.filter(contract_id=contract_id))
        assert sorted(t.kind for t in tasks) == sorted(kinds), contract_id
        assert all(t.status == "resolved" and t.applied_at is not None for t in tasks)
        assert sorted(h["kind"] for h in contract.decision_history) == sorted(kinds)
        assert contract.run_lease_owner == ""
        assert thread_snapshot(contract.thread_id).finished

    statuses = list(DBTaskResult.objects.values_list("status", flat=True))
    expected_runs = len(plan) + sum(len(kinds) for _, kinds, _ in plan)  # one per submit and per decision
    assert statuses == ["SUCCESSFUL"] * expected_runs
    # Both workers took part (not a correctness requirement, but otherwise this test
    # would prove nothing about two workers).
    worker_ids = {wid for ids in DBTaskResult.objects.values_list("worker_ids", flat=True) for wid in ids}
    assert len(worker_ids) == 2


def test_the_last_tasks_success_is_written_when_the_worker_stops(acme, database_tasks, tmp_path):
    """run_worker writes a task's success with its next claim; a worker that stops after
    the task (here --max-tasks 1) writes it on the way out."""
    contract_id = submit(acme, HIGH_RISK_TEXT)
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.run(
            [PYTHON, "manage.py", "run_worker", "--queue-name", "*", "--interval", "0.05", "--max-tasks", "1",
             "--no-startup-delay", "--no-reload", "--no-scheduler"],
            cwd=PROJECT_DIR, env=child_env(tasks_backend="database"), stdout=out, stderr=subprocess.STDOUT,
            timeout=HANG_GUARD_SECONDS,
        )
    assert worker.returncode == 0, log.read_text()
    assert pending_task(contract_id, "legal") is not None
    [(status, finished_at)] = DBTaskResult.objects.values_list("status", "finished_at")
    assert status == "SUCCESSFUL" and finished_at is not None, log.read_text()
