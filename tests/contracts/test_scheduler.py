"""One scheduler leads at a time, whatever the number of workers: the lead is a lock that
dies with its holder (a PostgreSQL advisory lock; a file lock on the embedded default),
each job runs once per period under it, and when the leader goes another takes over."""

from __future__ import annotations

from datetime import datetime

import pytest

from contracts.scheduler import JOBS, Job, Scheduler
from tests.support import postgresql_only

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]


def counting_jobs(runs: list[tuple[str, str]], owner: str) -> list[Job]:
    def job(now: datetime) -> int:
        runs.append((owner, "hourly"))
        return 1

    # An interval no test outlasts: a second run inside it would be a run too many.
    return [Job("hourly", "SCHEDULER_PRUNE_SECONDS", job)]


def test_of_two_schedulers_one_leads_and_runs_each_job_once_per_period(db):
    runs: list[tuple[str, str]] = []
    first, second = (Scheduler(name=name, jobs=counting_jobs(runs, name)) for name in ("first", "second"))
    try:
        for _ in range(5):
            first.tick()
            second.tick()
        assert (first.leading, second.leading) == (True, False)
        assert runs == [("first", "hourly")]

        # The leader goes (its lock with it): the other takes over and, new to the lead,
        # runs every job at once.
        first.leadership.release()
        first.leading = False
        first.stop()
        second.tick()
        assert second.leading
        assert runs == [("first", "hourly"), ("second", "hourly")]
        for _ in range(3):
            second.tick()
        assert len(runs) == 2
    finally:
        first.leadership.release()
        second.leadership.release()


@postgresql_only
def test_a_leader_whose_lock_connection_dies_steps_down(db):
    runs: list[tuple[str, str]] = []
    first, second = (Scheduler(name=name, jobs=counting_jobs(runs, name)) for name in ("first", "second"))
    try:
        first.tick()
        assert first.leading
        first.leadership.conn.close()  # as when PostgreSQL restarts or terminates it
        second.tick()
        assert second.leading  # the advisory lock died with the connection
        first.tick()
        assert not first.leading
    finally:
        first.leadership.release()
        second.leadership.release()


def test_a_failing_job_does_not_stop_the_others(db):
    ran: list[str] = []

    def broken(now: datetime) -> int:
        raise RuntimeError("job bug")

    def fine(now: datetime) -> int:
        ran.append("fine")
        return 0

    scheduler = Scheduler(name="solo", jobs=[Job("broken", "SCHEDULER_RECOVERY_SECONDS", broken),
                                             Job("fine", "SCHEDULER_RECOVERY_SECONDS", fine)])
    try:
        scheduler.tick()
        assert scheduler.leading and ran == ["fine"]
        assert "broken" in scheduler._failing
    finally:
        scheduler.leadership.release()


def test_the_production_jobs_run_on_this_database(db):
    """Each real job once, as a new leader runs them: against the real tables, nothing to do."""
    for job in JOBS:
        assert job.run(datetime.now().astimezone()) == 0, job.name
