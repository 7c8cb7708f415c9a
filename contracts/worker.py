"""The task worker, woken by PostgreSQL NOTIFY instead of polling.

django-tasks-db's worker sleeps `--interval` seconds whenever the queue is empty, so every
step of a run would wait up to that long before a worker looks again. Here each enqueue
sends `NOTIFY` (delivered when the enqueuing transaction commits) and an idle worker
waits on `LISTEN` for at most `--interval` seconds: work starts within milliseconds, and
the interval is only a safety net for a lost notification. On SQLite it falls back to
sleeping `--interval`.
"""

from __future__ import annotations

import logging
import time

import psycopg
from django.db import close_old_connections, connection
from django.db.utils import OperationalError
from django.dispatch import receiver
from django_tasks.signals import task_enqueued
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

logger = logging.getLogger(__name__)

CHANNEL = "hitl_tasks_enqueued"


@receiver(task_enqueued)
def _notify_workers(sender, task_result, **kwargs) -> None:
    if issubclass(sender, DatabaseBackend) and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])


class WakeableWorker(Worker):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._listener: psycopg.Connection | None = None
        self._woken_by_notification = False

    def _idle_wait_setup(self) -> None:
        if connection.vendor == "postgresql" and (self._listener is None or self._listener.closed or self._listener.broken):
            from contracts.graph.runner import postgres_connect

            self._listener = postgres_connect()
            self._listener.execute(f"LISTEN {CHANNEL}")

    def _idle_wait(self) -> None:
        self._woken_by_notification = False
        if connection.vendor != "postgresql":
            time.sleep(self.interval)
            return
        try:
            self._idle_wait_setup()
            # Returns on the first notification, or after `interval` at the latest.
            for _ in self._listener.notifies(timeout=self.interval, stop_after=1):
                self._woken_by_notification = True
        except psycopg.Error:
            logger.warning("LISTEN connection lost; polling until it is back", exc_info=True)
            self._listener = None
            time.sleep(self.interval)

    def run(self) -> None:
        # The loop of django_tasks_db's Worker.run, continuous mode, with its idle
        # time.sleep(interval) replaced by _idle_wait().
        logger.info("Starting worker worker_id=%s queues=%s", self.worker_id, ",".join(self.queue_names))
        while self.running:
            close_old_connections()
            tasks = DBTaskResult.objects.ready().filter(backend_name=self.backend_name)
            if not self.process_all_queues:
                tasks = tasks.filter(queue_name__in=self.queue_names)
            if self.excluded_queue_names:
                tasks = tasks.exclude(queue_name__in=self.excluded_queue_names)
            with exclusive_transaction(tasks.db):
                try:
                    task_result = tasks.get_locked()
                    if task_result is not None:
                        task_result.claim(self.worker_id)  # so no other worker runs it
                except OperationalError as exc:
                    if not is_locked_database_exception(exc):
                        raise
                    task_result = None
            if task_result is not None:
                self.run_task(task_result)
            if self.max_tasks is not None and self._run_tasks >= self.max_tasks:
                return
            close_old_connections()
            if self.running and task_result is None:
                self._idle_wait()
