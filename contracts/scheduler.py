"""The scheduler: periodic jobs, run inside the task workers, by one of them at a time.

Every `manage.py run_worker` starts a scheduler thread; they elect one leader through a
lock that dies with its holder — a PostgreSQL session advisory lock on a connection of
its own, or on SQLite an exclusive file lock beside the database — so any number of
workers run each job once per period, and when the leader's process dies (or loses its
database connection) another takes over within a tick. A new leader runs every job
once at once: the jobs are idempotent (each claims its rows with a conditional
UPDATE), so a job run twice around a change of leader does nothing twice.

The jobs only look for work and queue it (a drive per contract) or make one small
change per row; the workers do the running. Intervals come from settings.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone

logger = logging.getLogger(__name__)

# How often a follower asks for the lock, and the leader checks it still holds it.
TICK_SECONDS = 1.0


@dataclass(frozen=True)
class Job:
    name: str
    interval_setting: str
    run: Callable[[datetime], Any]

    @property
    def interval(self) -> float:
        return float(getattr(settings, self.interval_setting))


def _recover(now: datetime) -> int:
    from contracts.services import contracts_recover
    from contracts.worker import abandoned_task_results_sweep

    return len(contracts_recover(now=now)) + abandoned_task_results_sweep(now=now)


def _claims_expire(now: datetime) -> int:
    from reviews.services import review_claims_expire

    return review_claims_expire(now=now)


def _prune(now: datetime) -> int:
    from reviews.stream import queue_event_retention, queue_events_prune

    return queue_events_prune(older_than=queue_event_retention(), now=now)


def _reminders(now: datetime) -> int:
    from reviews.timers import review_reminders_send

    return review_reminders_send(now=now)


def _escalations(now: datetime) -> int:
    from reviews.timers import review_escalations_run

    return review_escalations_run(now=now)


def _expiries(now: datetime) -> int:
    from reviews.timers import review_expiries_run

    return review_expiries_run(now=now)


def _webhooks(now: datetime) -> int:
    # Claims and hands over only: the requests run on sender threads, so a hanging
    # receiver never holds up this loop (and recovery with it).
    from reviews.webhooks import webhook_deliveries_run

    return webhook_deliveries_run(now=now)


def _retention(now: datetime) -> int:
    from contracts.retention import checkpoints_prune
    from reviews.webhooks import webhook_deliveries_prune

    return checkpoints_prune(now=now).threads + webhook_deliveries_prune(now=now)


JOBS: list[Job] = [
    Job("recover", "SCHEDULER_RECOVERY_SECONDS", _recover),
    Job("claims_expire", "SCHEDULER_CLAIMS_SECONDS", _claims_expire),
    Job("prune", "SCHEDULER_PRUNE_SECONDS", _prune),
    # The queue's clock; in this order, so an escalation due with an expiry comes first.
    Job("review_reminders", "SCHEDULER_REVIEW_TIMERS_SECONDS", _reminders),
    Job("review_escalations", "SCHEDULER_REVIEW_TIMERS_SECONDS", _escalations),
    Job("review_expiries", "SCHEDULER_REVIEW_TIMERS_SECONDS", _expiries),
    # After the timers, so their events leave in the same round.
    Job("webhooks", "SCHEDULER_WEBHOOKS_SECONDS", _webhooks),
    Job("retention", "SCHEDULER_RETENTION_SECONDS", _retention),
]


# --- Leadership ---------------------------------------------------------------------


class _PostgresLeadership:
    """A session advisory lock: held while its connection lives, released by PostgreSQL
    the moment the holder's connection or process goes."""

    def __init__(self) -> None:
        db = connections["default"].settings_dict
        digest = hashlib.sha256(f"hitl-scheduler:{db['NAME']}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self.conn: psycopg.Connection | None = None

    def acquire(self) -> bool:
        from contracts.graph.runner import postgres_connect

        self.release()
        conn = postgres_connect()
        row = conn.execute("SELECT pg_try_advisory_lock(%s) AS held", [self.key]).fetchone()
        if row["held"]:
            self.conn = conn
            return True
        conn.close()
        return False

    def held(self) -> bool:
        if self.conn is None or self.conn.closed or self.conn.broken:
            return False
        self.conn.execute("SELECT 1")  # a dead connection raises here: leadership is gone
        return True

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
            self.conn = None


class _FileLeadership:
    """The embedded default: every worker runs on this machine, so an exclusive lock on
    a file beside the checkpoints does the same; the kernel drops it with the process."""

    def __init__(self) -> None:
        self.path = Path(f"{settings.CHECKPOINT_SQLITE_PATH}.scheduler.lock")
        self.file: Any = None

    def acquire(self) -> bool:
        self.release()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = self.path.open("a")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            return False
        self.file = file
        return True

    def held(self) -> bool:
        return self.file is not None

    def release(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _leadership() -> _PostgresLeadership | _FileLeadership:
    return _PostgresLeadership() if connections["default"].vendor == "postgresql" else _FileLeadership()


# --- The loop -----------------------------------------------------------------------


class Scheduler:
    def __init__(self, *, name: str, jobs: list[Job] | None = None) -> None:
        self.name = name
        self.jobs = jobs if jobs is not None else JOBS
        self.leadership = _leadership()
        self.leading = False
        self.stopped = threading.Event()
        self._next_run: dict[str, float] = {}
        self._failing: set[str] = set()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="scheduler", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        try:
            while not self.stopped.is_set():
                self.tick()
                self.stopped.wait(self._sleep_seconds())
        finally:
            self.leadership.release()
            connections.close_all()

    def tick(self) -> None:
        """One round: keep or seek the lead; as leader, run every job that is due."""
        try:
            if self.leading and not self.leadership.held():
                self._lead_lost("its lock connection is gone")
            if not self.leading and self.leadership.acquire():
                self.leading = True
                self._next_run = {}  # a new leader runs every job now
                logger.info("scheduler %s: leading", self.name)
        except Exception as exc:  # the database is unreachable: try again next tick
            if self.leading:
                self._lead_lost(f"{type(exc).__name__}: {exc}")
            return
        if self.leading:
            for job in self.jobs:
                if self._next_run.get(job.name, 0.0) <= time.monotonic():
                    self._run_job(job)

    def _lead_lost(self, why: str) -> None:
        logger.warning("scheduler %s: no longer leading (%s)", self.name, why)
        self.leading = False
        self.leadership.release()

    def _run_job(self, job: Job) -> None:
        close_old_connections()
        self._next_run[job.name] = time.monotonic() + job.interval
        try:
            result = job.run(timezone.now())
        except Exception as exc:
            # Logged once per failing streak: a database outage would otherwise log
            # every job on every tick.
            if job.name not in self._failing:
                logger.warning("scheduler %s: job %s failed: %s: %s", self.name, job.name, type(exc).__name__, exc)
                self._failing.add(job.name)
            connections["default"].close_if_unusable_or_obsolete()
            return
        if job.name in self._failing:
            logger.info("scheduler %s: job %s works again", self.name, job.name)
            self._failing.discard(job.name)
        # Routine runs that found nothing stay out of the log unless asked for.
        logger.log(logging.INFO if result else logging.DEBUG, "scheduler %s: ran %s (%s)", self.name, job.name, result)
        close_old_connections()

    def _sleep_seconds(self) -> float:
        if not self.leading:
            return TICK_SECONDS
        due = min(self._next_run.values(), default=time.monotonic())
        return max(0.05, min(TICK_SECONDS, due - time.monotonic()))
