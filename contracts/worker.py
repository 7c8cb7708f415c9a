"""The task worker: woken by PostgreSQL NOTIFY instead of polling, and built to outlive
its database.

django-tasks-db's worker sleeps `--interval` seconds whenever the queue is empty, so every
step of a run would wait up to that long before a worker looks again. Here each enqueue
sends `NOTIFY` (delivered when the enqueuing transaction commits) and an idle worker
waits on `LISTEN` for at most `--interval` seconds: work starts within milliseconds, and
the interval is only a safety net for a lost notification. The NOTIFY is sent by a
trigger on the task table (migration contracts 0009). On SQLite the worker falls back to
sleeping `--interval`.

On PostgreSQL a task's success is written by the worker's next claim, in the same
statement (no transaction of its own: two commits fewer per contract); the loop claims
again straight after a task, and writes what is left when it stops. A worker killed in
between leaves the row `RUNNING`, swept like any other (below): the drive itself was
recorded by the task, on the contract.

Faults: a database error anywhere in the loop (a restart, a terminated connection, a
failover) drops the connections, waits with backoff and carries on, logged once per
outage; the upstream loop would let it end the process. A task row left `RUNNING` by a
worker that died (or could not record the result) is swept by the scheduler
(abandoned_task_results_sweep) and its contract re-driven by recovery. SIGTERM lets the
task in hand finish, for at most WORKER_SHUTDOWN_GRACE_SECONDS, then the process exits.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timedelta
from types import FrameType

import psycopg
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, connections
from django.utils import timezone
from django_tasks_db.compat import TaskResultStatus
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult, get_date_max
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

logger = logging.getLogger(__name__)

CHANNEL = "hitl_tasks_enqueued"
# Backoff while the database is unreachable: from the first to the last, doubling.
OUTAGE_BACKOFF_FIRST, OUTAGE_BACKOFF_LAST = 0.25, 5.0


def abandoned_task_results_sweep(*, now: datetime | None = None) -> int:
    """Mark failed the task rows still `RUNNING` long after any live worker would have
    finished them (longer than a run lease: a drive renews its lease at every pass):
    their worker died, or could not write the result while the database was away. The
    contract's own state is recovered separately (its lease expires; contracts_recover).
    Returns how many rows were swept."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=2 * settings.RUN_LEASE_SECONDS)
    return DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING, started_at__lt=cutoff).update(
        status=TaskResultStatus.FAILED,
        finished_at=now,
        exception_class_path="contracts.worker.AbandonedTask",
        traceback="The worker running this task stopped before recording its result.",
    )


class _Outage:
    """Backoff and logging for one run of database failures: the first failure and the
    recovery are logged, the failures in between are not."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.delay = OUTAGE_BACKOFF_FIRST

    def failed(self, where: str, exc: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            logger.warning("database unavailable (%s: %s: %s); retrying with backoff", where, type(exc).__name__, exc)
        # Drop every connection of this thread: the next query opens a fresh one.
        for conn in connections.all(initialized_only=True):
            conn.close_if_unusable_or_obsolete()
            if conn.errors_occurred or not conn.is_usable():
                conn.close()
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, OUTAGE_BACKOFF_LAST)

    def ok(self) -> None:
        if self.since is not None:
            logger.warning("database available again after %.1f s", time.monotonic() - self.since)
        self.since, self.delay = None, OUTAGE_BACKOFF_FIRST


class WakeableWorker(Worker):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._listener: psycopg.Connection | None = None
        self._woken_by_notification = False
        self._outage = _Outage()
        self._listen_down = False
        # A task that succeeded and is not written yet (PostgreSQL): the next claim does.
        self._succeeded: DBTaskResult | None = None

    # --- Signals ----------------------------------------------------------------------

    def shutdown(self, signum: int, frame: FrameType | None) -> None:
        if self.running and self.running_task:
            # The task in hand may finish, but not for ever: a run that hangs would keep
            # a deploy waiting. Its lease then expires and recovery takes it over.
            grace = settings.WORKER_SHUTDOWN_GRACE_SECONDS
            timer = threading.Timer(grace, self._exit_after_grace, args=(grace,))
            timer.daemon = True
            timer.start()
        super().shutdown(signum, frame)

    @staticmethod
    def _exit_after_grace(grace: float) -> None:
        logger.warning("task still running %s s after the stop signal; exiting without it", grace)
        os._exit(1)

    # --- Idle wait --------------------------------------------------------------------

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
            if self._listen_down:
                logger.warning("LISTEN connection back")
                self._listen_down = False
        except psycopg.Error as exc:
            if not self._listen_down:
                logger.warning("LISTEN connection lost (%s); polling until it is back", exc)
                self._listen_down = True
            self._listener = None
            time.sleep(self.interval)

    # --- The loop ---------------------------------------------------------------------

    def _claim_next(self) -> DBTaskResult | None:
        if connection.vendor == "postgresql":
            return self._claim_next_postgresql()
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
            except DatabaseError as exc:
                if not is_locked_database_exception(exc):
                    raise
                task_result = None
        return task_result

    def _claim_next_postgresql(self) -> DBTaskResult | None:
        """The same claim as django-tasks-db's (the oldest ready task of the highest
        priority, rows other workers hold skipped, marked running with this worker's id)
        in one statement instead of a transaction of four: it runs for every task. The
        previous task's success, if not written yet, is written by the same statement."""
        table = DBTaskResult._meta.db_table
        finished, finished_params = self._success_sql()
        where = ["status = %s", "backend_name = %s", "(run_after = %s OR run_after <= %s)"]
        params: list = [TaskResultStatus.READY.value, self.backend_name, get_date_max(), timezone.now()]
        if not self.process_all_queues:
            where.append("queue_name = ANY(%s)")
            params.append(list(self.queue_names))
        if self.excluded_queue_names:
            where.append("NOT (queue_name = ANY(%s))")
            params.append(list(self.excluded_queue_names))
        sql = (
            f"{finished}UPDATE {table} SET status = %s, started_at = %s, worker_ids = worker_ids || jsonb_build_array(%s::text)"
            f" WHERE id = (SELECT id FROM {table} WHERE {' AND '.join(where)}"
            f" ORDER BY priority DESC, run_after ASC, enqueued_at ASC LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING *"
        )
        claimed = list(DBTaskResult.objects.raw(
            sql, [*finished_params, TaskResultStatus.RUNNING.value, timezone.now(), self.worker_id, *params]
        ))
        self._succeeded = None  # written
        return claimed[0] if claimed else None

    # --- Success, written with the next claim (PostgreSQL) ----------------------------

    def run_task(self, db_task_result: DBTaskResult) -> None:
        if connection.vendor == "postgresql":
            # Upstream's run_task, with its set_successful (a save of its own) deferred.
            db_task_result.set_successful = lambda return_value: self._success_defer(db_task_result, return_value)
        super().run_task(db_task_result)

    def _success_defer(self, db_task_result: DBTaskResult, return_value: object) -> None:
        # The instance as set_successful leaves it: the task_finished signal reads it.
        db_task_result.status = TaskResultStatus.SUCCESSFUL
        db_task_result.finished_at = timezone.now()
        db_task_result.return_value = return_value
        db_task_result.exception_class_path = db_task_result.traceback = ""
        self._succeeded = db_task_result

    def _success_sql(self) -> tuple[str, list]:
        """A data-modifying WITH that writes the deferred success (the row is still
        `RUNNING` and this worker's; the claim beside it only picks `READY` rows)."""
        done = self._succeeded
        if done is None:
            return "", []
        table = DBTaskResult._meta.db_table
        value = DBTaskResult._meta.get_field("return_value").get_db_prep_save(done.return_value, connection)
        return (
            f"WITH finished AS (UPDATE {table} SET status = %s, finished_at = %s, return_value = %s,"
            f" exception_class_path = '', traceback = '' WHERE id = %s AND status = %s) ",
            [done.status, done.finished_at, value, done.pk, TaskResultStatus.RUNNING.value],
        )

    def _success_write(self) -> None:
        """What the loop leaves unwritten when it stops."""
        done, self._succeeded = self._succeeded, None
        if done is not None:
            DBTaskResult.objects.filter(pk=done.pk, status=TaskResultStatus.RUNNING).update(
                status=done.status, finished_at=done.finished_at, return_value=done.return_value,
                exception_class_path="", traceback="",
            )

    def run(self) -> None:
        try:
            self._loop()
        finally:
            try:
                self._success_write()
            except (DatabaseError, psycopg.Error):
                logger.warning("could not record the last task's success; the row is swept later", exc_info=True)

    def _loop(self) -> None:
        # The loop of django_tasks_db's Worker.run, continuous mode, with its idle
        # time.sleep(interval) replaced by _idle_wait() and database errors survived.
        logger.info("Starting worker worker_id=%s queues=%s", self.worker_id, ",".join(self.queue_names))
        while self.running:
            try:
                close_old_connections()
                task_result = self._claim_next()
                if task_result is not None:
                    # Records success or failure itself; if even that cannot be written
                    # (the database went away mid-task) the row is swept later.
                    self.run_task(task_result)
                self._outage.ok()
            except (DatabaseError, psycopg.Error) as exc:
                self._outage.failed("claiming or recording a task", exc)
                continue
            if self.max_tasks is not None and self._run_tasks >= self.max_tasks:
                return
            close_old_connections()
            if self.running and task_result is None:
                self._idle_wait()


def scheduler_start(*, worker_id: str) -> None:
    """The scheduler thread of this worker process (contracts.scheduler)."""
    from contracts.scheduler import Scheduler

    # A daemon thread: when the worker process ends, the thread and its lock go with it.
    Scheduler(name=worker_id).start()
