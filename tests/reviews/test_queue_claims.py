"""Claims on review tasks: one owner under a race, leases that expire by the clock
(injected through `now=`), renewals, releases, and how a claim gates resume."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from config.api_errors import Conflict, Forbidden
from contracts.graph.runner import postgres_connect
from contracts.models import Contract
from contracts.services import contract_submit
from reviews.models import QueueEvent, ReviewTask
from reviews.services import review_task_claim, review_task_release, review_task_resume
from tenants.models import AuditRecord, Role
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT, HIGH_RISK_TEXT, member_create
from tests.support import postgresql_only, race, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CLAIMERS = 50


def legal_task(world, text: str = HIGH_RISK_TEXT) -> ReviewTask:
    contract = contract_submit(tenant=world.tenant, submitted_by=world.agent.user, title="MSA", text=text)
    return ReviewTask.objects.get(contract=contract, kind="legal")


def post(member, world, task: ReviewTask, action: str, body: dict | None = None):
    return member.client.post(world.url(f"reviews/{task.pk}/{action}/"), body or {}, format="json")


def audit_actions(task: ReviewTask) -> list[str]:
    records = AuditRecord.objects.filter(target_type="reviewtask", target_id=str(task.pk)).order_by("created_at", "id")
    return list(records.values_list("action", flat=True))


def listed(member, world, **params) -> list[str]:
    response = member.client.get(world.url("reviews/"), params)
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


# --- The race ------------------------------------------------------------------------------


@contextmanager
def connection_pool_of(size: int) -> Iterator[None]:
    """Let `size` threads hold a database connection at once.

    The product's pool (config/env.py) gives a process 8 connections. race() takes each
    thread's connection before the barrier, so a thread past the pool's size would wait
    for one, time out, never reach the barrier, and leave the others waiting there."""
    options = connection.settings_dict["OPTIONS"]
    saved = options.get("pool")
    if not saved:  # no pool configured: one connection per thread already
        yield
        return
    connection.close()  # back to the old pool, which is then closed with it
    connection.close_pool()
    options["pool"] = {**(saved if isinstance(saved, dict) else {}), "max_size": size}
    try:
        yield
    finally:
        connection.close()
        connection.close_pool()  # its idle connections too
        options["pool"] = saved


def lock_waiters(probe) -> int:
    """Sessions of the test database waiting for a lock, seen from an outside connection
    (pg_stat_activity inside a transaction is a frozen snapshot)."""
    row = probe.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    return row["n"]


def behind_the_row_lock(task: ReviewTask, run: Callable[[], Any], *, waiters: int, hold: Callable[[], Any] | None = None) -> Any:
    """Call `run()` in a background thread while this thread holds the task's row lock
    (after `hold()`, uncommitted), and commit only once `waiters` sessions queue for it.

    This makes the contention certain instead of likely: every contender is in flight at
    the same moment and each one waits on the row, as under a burst of real traffic."""
    box: dict[str, Any] = {}

    def background() -> None:
        try:
            box["value"] = run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=background, name="behind-row-lock")
    with postgres_connect() as probe, transaction.atomic():
        # The lock is held until this block commits.
        ReviewTask.objects.select_for_update().get(pk=task.pk)
        if hold is not None:
            hold()
        thread.start()
        wait_until(lambda: lock_waiters(probe) >= waiters, what=f"{waiters} sessions waiting for the task row")
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


@postgresql_only
def test_fifty_racing_claims_give_one_owner_and_forty_nine_409s_naming_it(acme):
    task = legal_task(acme)
    # Fifty different reviewers: a second claim by the same user would be a renewal.
    tokens = [member_create(acme.tenant, Role.REVIEWER, username=f"acme-claimer-{i:02d}")[1] for i in range(CLAIMERS)]
    url = acme.url(f"reviews/{task.pk}/claim/")

    def attempt(i: int) -> tuple[int, dict | None]:
        # One client per thread. raise_request_exception=False because the test client
        # re-raises *any* thread's unhandled exception (it listens on a global signal):
        # a 500 in one thread would otherwise surface in all fifty.
        client = APIClient(raise_request_exception=False)
        client.credentials(HTTP_AUTHORIZATION=f"Token {tokens[i]}")
        response = client.post(url)
        return response.status_code, (response.json() if response.status_code != 500 else None)

    with connection_pool_of(CLAIMERS + 2):
        results = behind_the_row_lock(task, lambda: race(CLAIMERS, attempt), waiters=CLAIMERS)
    assert all(outcome == "ok" for outcome, _ in results), [value for outcome, value in results if outcome != "ok"]
    responses = [value for _, value in results]

    statuses = sorted(status for status, _ in responses)
    assert statuses == [200] + [409] * (CLAIMERS - 1), statuses
    [winner] = [body for status, body in responses if status == 200]
    holder, expiry = winner["claimed_by"], winner["claim_expires_at"]
    assert holder.startswith("acme-claimer-") and expiry
    for status, body in responses:
        if status == 409:
            # Every loser is told who holds the task and until when.
            error = body["error"]
            assert error["code"] == "conflict"
            assert (error["claimed_by"], error["claim_expires_at"]) == (holder, expiry)
            assert holder in error["message"] and expiry in error["message"]

    task.refresh_from_db()
    assert task.claimed_by.username == holder
    assert task.claim_expires_at.isoformat() == expiry
    assert audit_actions(task) == ["review.claimed"]
    assert QueueEvent.objects.filter(task=task, type="review.claimed").count() == 1


@postgresql_only
def test_an_admin_release_that_waited_behind_a_claim_releases_it(acme):
    """Regression: the lock query used to join the holder, and a caller that waited for
    the lock saw the new holder's id but no holder (500)."""
    task = legal_task(acme)

    def release():
        try:
            return review_task_release(tenant=acme.tenant, task_id=task.pk, user=acme.admin.user)
        except Exception as exc:  # noqa: BLE001 - what the API would turn into a 500
            return exc

    hold = lambda: review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.senior.user)  # noqa: E731
    released = behind_the_row_lock(task, release, waiters=1, hold=hold)
    assert isinstance(released, ReviewTask), repr(released)
    task.refresh_from_db()
    assert task.claimed_by_id is None
    assert audit_actions(task) == ["review.claimed", "review.released"]


# --- Claim, renew, conflict ------------------------------------------------------------------


def test_a_second_user_gets_409_naming_the_holder_and_the_expiry(acme):
    task = legal_task(acme)
    first = post(acme.reviewer, acme, task, "claim")
    assert first.status_code == 200, first.content
    assert first.json()["claimed_by"] == "acme-reviewer"

    second = post(acme.senior, acme, task, "claim")
    assert second.status_code == 409
    error = second.json()["error"]
    assert error["code"] == "conflict"
    assert error["claimed_by"] == "acme-reviewer"
    assert error["claim_expires_at"] == first.json()["claim_expires_at"]
    assert "acme-reviewer" in error["message"] and first.json()["claim_expires_at"] in error["message"]
    # An admin does not jump the claim either.
    assert post(acme.admin, acme, task, "claim").status_code == 409
    task.refresh_from_db()
    assert task.claimed_by_id == acme.reviewer.user.pk


def test_the_holder_renewing_extends_the_expiry(acme):
    task = legal_task(acme)
    lease = timedelta(seconds=acme.tenant.claim_lease_seconds)
    t0 = timezone.now()
    claimed = review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user, now=t0)
    assert claimed.claim_expires_at == t0 + lease
    renewed = review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user, now=t0 + timedelta(minutes=5))
    assert renewed.claim_expires_at == t0 + timedelta(minutes=5) + lease
    assert audit_actions(task) == ["review.claimed", "review.claim_renewed"]

    # Over the API too: the second claim by the holder is a 200 with a later expiry.
    before = post(acme.reviewer, acme, task, "claim").json()["claim_expires_at"]
    after = post(acme.reviewer, acme, task, "claim")
    assert after.status_code == 200
    assert after.json()["claimed_by"] == "acme-reviewer"
    assert after.json()["claim_expires_at"] > before


def test_a_claim_on_a_decided_task_is_409(acme):
    task = legal_task(acme)
    review_task_resume(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user, data={"decision": "approve"})
    response = post(acme.senior, acme, task, "claim")
    assert response.status_code == 409
    assert response.json()["error"]["status"] == "resolved"


def test_claims_need_the_permission_to_resume(acme, globex):
    contract = contract_submit(tenant=acme.tenant, submitted_by=acme.agent.user, title="PO", text=HIGH_RISK_LARGE_PAYMENT_TEXT)
    finance = ReviewTask.objects.get(contract=contract, kind="finance")
    # No permission: viewers by role, a reviewer outside the finance team by routing.
    assert post(acme.viewer, acme, finance, "claim").status_code == 403
    refused = post(acme.reviewer, acme, finance, "claim")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")
    assert post(acme.reviewer2, acme, finance, "claim").status_code == 200
    # Another tenant: 404, whatever its members' roles.
    assert post(globex.admin, globex, finance, "claim").status_code == 404
    assert post(globex.admin, acme, finance, "claim").status_code == 404
    finance.refresh_from_db()
    assert finance.claimed_by_id == acme.reviewer2.user.pk


# --- Leases ----------------------------------------------------------------------------------


def test_an_expired_lease_returns_the_task_to_the_queue(acme):
    acme.tenant.claim_lease_seconds = 10
    acme.tenant.save(update_fields=["claim_lease_seconds"])
    task = legal_task(acme)
    lease = timedelta(seconds=10)
    # Claimed at T, eleven seconds ago by the real clock: expired now, live at T + 9 s.
    t = timezone.now() - lease - timedelta(seconds=1)
    review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user, now=t)

    with pytest.raises(Conflict) as refused:
        review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.senior.user, now=t + lease - timedelta(seconds=1))
    assert refused.value.extra == {"claimed_by": "acme-reviewer", "claim_expires_at": (t + lease).isoformat()}

    # The queue, on the real clock, already shows it as nobody's.
    assert str(task.pk) in listed(acme.viewer, acme, assignee="none")
    assert str(task.pk) not in listed(acme.viewer, acme, assignee="acme-reviewer")
    assert listed(acme.reviewer, acme, assignee="me") == []
    detail = acme.viewer.client.get(acme.url(f"reviews/{task.pk}/")).json()
    assert (detail["claimed_by"], detail["claim_expires_at"]) == (None, None)

    taken = review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.senior.user, now=t + lease + timedelta(seconds=1))
    assert taken.claimed_by_id == acme.senior.user.pk
    assert taken.claim_expires_at == t + 2 * lease + timedelta(seconds=1)
    # A take-over is a new claim, not a renewal.
    assert audit_actions(task) == ["review.claimed", "review.claimed"]
    assert listed(acme.senior, acme, assignee="me") == [str(task.pk)]


def test_an_expired_lease_can_be_taken_over_through_the_api(acme):
    task = legal_task(acme)
    lease = timedelta(seconds=acme.tenant.claim_lease_seconds)
    review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user, now=timezone.now() - lease - timedelta(seconds=1))
    response = post(acme.senior, acme, task, "claim")
    assert response.status_code == 200, response.content
    assert response.json()["claimed_by"] == "acme-senior"
    # The former holder's lease is gone: resuming now runs into the senior's claim.
    assert post(acme.reviewer, acme, task, "resume", {"decision": "approve"}).status_code == 409


def test_the_lease_ends_exactly_at_its_expiry(acme):
    task = legal_task(acme)
    t = timezone.now()
    claimed = review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user, now=t)
    with pytest.raises(Conflict):
        review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.senior.user,
                          now=claimed.claim_expires_at - timedelta(microseconds=1))
    taken = review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.senior.user, now=claimed.claim_expires_at)
    assert taken.claimed_by_id == acme.senior.user.pk


# --- Release -----------------------------------------------------------------------------


def test_the_holder_releases_the_claim(acme):
    task = legal_task(acme)
    post(acme.reviewer, acme, task, "claim")
    response = post(acme.reviewer, acme, task, "release")
    assert response.status_code == 200, response.content
    assert (response.json()["claimed_by"], response.json()["claim_expires_at"]) == (None, None)
    task.refresh_from_db()
    assert (task.claimed_by_id, task.claim_expires_at) == (None, None)
    assert audit_actions(task) == ["review.claimed", "review.released"]
    assert str(task.pk) in listed(acme.viewer, acme, assignee="none")
    # Nothing left to release.
    again = post(acme.reviewer, acme, task, "release")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "conflict")


def test_an_admin_releases_anyones_claim(acme):
    task = legal_task(acme)
    post(acme.reviewer, acme, task, "claim")
    response = post(acme.admin, acme, task, "release")
    assert response.status_code == 200, response.content
    task.refresh_from_db()
    assert task.claimed_by_id is None
    assert post(acme.senior, acme, task, "claim").status_code == 200


def test_another_reviewer_may_not_release_a_claim(acme, globex):
    task = legal_task(acme)
    post(acme.reviewer, acme, task, "claim")
    refused = post(acme.senior, acme, task, "release")
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "forbidden" and error["claimed_by"] == "acme-reviewer"
    assert post(acme.viewer, acme, task, "release").status_code == 403
    assert post(globex.admin, globex, task, "release").status_code == 404
    task.refresh_from_db()
    assert task.claimed_by_id == acme.reviewer.user.pk
    assert audit_actions(task) == ["review.claimed"]


def test_a_former_holder_releases_neither_the_expired_claim_nor_the_next_one(acme):
    task = legal_task(acme)
    lease = timedelta(seconds=acme.tenant.claim_lease_seconds)
    review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user, now=timezone.now() - lease - timedelta(seconds=1))
    with pytest.raises(Conflict):
        review_task_release(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user)
    claimed_at = timezone.now()
    review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.senior.user, now=claimed_at)
    with pytest.raises(Forbidden):
        review_task_release(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user, now=claimed_at)
    task.refresh_from_db()
    assert task.claimed_by_id == acme.senior.user.pk


# --- Claims and resume -------------------------------------------------------------------


def test_resume_of_a_task_claimed_by_someone_else_is_409(acme):
    task = legal_task(acme)
    claim = post(acme.reviewer, acme, task, "claim").json()
    for member in (acme.senior, acme.admin):
        refused = post(member, acme, task, "resume", {"decision": "approve"})
        assert refused.status_code == 409
        error = refused.json()["error"]
        assert (error["code"], error["status"]) == ("conflict", "pending")
        assert (error["claimed_by"], error["claim_expires_at"]) == ("acme-reviewer", claim["claim_expires_at"])
    task.refresh_from_db()
    assert (task.status, task.decision) == ("pending", None)
    assert "review.resolved" not in audit_actions(task)
    # The holder may.
    assert post(acme.reviewer, acme, task, "resume", {"decision": "approve"}).status_code == 202
    assert Contract.objects.get(pk=task.contract_id).status == "approved"


def test_resume_of_an_unclaimed_task_claims_it_for_the_decider(acme):
    task = legal_task(acme)
    assert task.claimed_by_id is None
    response = post(acme.senior, acme, task, "resume", {"decision": "reject"})
    assert response.status_code == 202, response.content
    task.refresh_from_db()
    assert task.status == "resolved"
    assert task.claimed_by_id == acme.senior.user.pk == task.decided_by_id
    # The lease is over with the decision: the task is nobody's work in progress.
    assert task.claim_expires_at is None


def test_an_expired_claim_of_someone_else_does_not_block_resume(acme):
    task = legal_task(acme)
    lease = timedelta(seconds=acme.tenant.claim_lease_seconds)
    review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.senior.user, now=timezone.now() - lease - timedelta(seconds=1))
    assert post(acme.reviewer, acme, task, "resume", {"decision": "approve"}).status_code == 202
    task.refresh_from_db()
    assert task.decided_by_id == task.claimed_by_id == acme.reviewer.user.pk
