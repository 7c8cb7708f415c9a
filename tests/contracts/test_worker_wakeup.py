"""The worker's idle wait ends when a task is enqueued (NOTIFY), not when a poll
interval runs out."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from contracts.services import contract_submit
from contracts.worker import WakeableWorker
from tests.support import postgresql_only

pytestmark = [pytest.mark.django_db(transaction=True), postgresql_only]

# Far longer than the join below: if the wait ended, a notification ended it.
POLL_INTERVAL = 120.0


def _worker() -> WakeableWorker:
    return WakeableWorker(
        queue_names=["*"], interval=POLL_INTERVAL, batch=False, backend_name="default",
        startup_delay=False, max_tasks=None, worker_id="wakeup-test", excluded_queue_names=[],
    )


def _idle_wait_in_thread(worker: WakeableWorker) -> tuple[threading.Thread, threading.Event, threading.Event]:
    listening, woke = threading.Event(), threading.Event()

    def wait() -> None:
        try:
            # Open the LISTEN connection first, so the notification cannot come too early.
            worker._idle_wait_setup()
            listening.set()
            worker._idle_wait()
            woke.set()
        finally:
            connection.close()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    assert listening.wait(30)
    return thread, listening, woke


def test_idle_worker_wakes_when_a_task_is_enqueued(acme, settings):
    # Enqueue to the database backend, as a web process does in production
    # (django_tasks resets its cached backends on setting_changed).
    settings.TASKS = {"default": {"BACKEND": "contracts.queue_backend.QueueBackend"}}
    worker = _worker()
    thread, _, woke = _idle_wait_in_thread(worker)
    try:
        with transaction.atomic():
            contract_submit(tenant=acme.tenant, submitted_by=acme.agent.user, title="T", text="short")
        thread.join(60)
        assert woke.is_set() and worker._woken_by_notification, "the worker kept sleeping after a task was enqueued"
    finally:
        worker._listener and worker._listener.close()


def test_nothing_enqueued_means_no_wakeup(acme):
    worker = _worker()
    worker.interval = 0.3  # short, so the test ends; no notification arrives in it
    thread, _, woke = _idle_wait_in_thread(worker)
    thread.join(30)
    assert woke.is_set() and not worker._woken_by_notification
    worker._listener and worker._listener.close()
