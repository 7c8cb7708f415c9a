"""Catch-up (GET events/?after=), websocket tickets (POST /api/v1/ws-ticket/) and the
retention of both."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from contracts.services import contract_submit
from reviews.models import QueueEvent, ReviewTask, WebsocketTicket
from reviews.services import review_task_claim, review_task_release
from reviews.stream import TICKET_TTL, queue_events_prune, websocket_ticket_create
from tenants.models import ApiToken
from tenants.services import membership_remove
from tests.factories import HIGH_RISK_TEXT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def events_url(world, after: int, **params) -> str:
    extra = "".join(f"&{key}={value}" for key, value in params.items())
    return world.url(f"events/?after={after}{extra}")


def five_events(world) -> tuple[int, ReviewTask]:
    """review.created, then claimed/released twice; returns (position before, task)."""
    world.tenant.refresh_from_db()
    start = world.tenant.event_seq
    contract = contract_submit(tenant=world.tenant, submitted_by=world.agent.user, title="MSA", text=HIGH_RISK_TEXT)
    task = ReviewTask.objects.get(tenant=world.tenant, contract=contract)
    for _ in range(2):
        review_task_claim(tenant=world.tenant, task_id=task.pk, user=world.reviewer.user)
        review_task_release(tenant=world.tenant, task_id=task.pk, user=world.reviewer.user)
    return start, task


# --- Catch-up -----------------------------------------------------------------------------


def test_events_after_a_position_are_returned_in_order(acme):
    start, task = five_events(acme)
    response = acme.viewer.client.get(events_url(acme, start))
    assert response.status_code == 200, response.content
    body = response.json()
    assert [(e["seq"], e["type"]) for e in body["results"]] == [
        (start + 1, "review.created"),
        (start + 2, "review.claimed"),
        (start + 3, "review.released"),
        (start + 4, "review.claimed"),
        (start + 5, "review.released"),
    ]
    assert (body["has_more"], body["latest_seq"]) == (False, start + 5)
    created = body["results"][0]
    assert created["task_id"] == str(task.pk)
    assert (created["kind"], created["status"]) == ("legal", "pending")
    assert created["risk_score"] == pytest.approx(0.8245)
    assert created["at"]


def test_events_come_in_pages(acme):
    start, _ = five_events(acme)
    seen, after = [], start
    while True:
        body = acme.reviewer.client.get(events_url(acme, after, limit=2)).json()
        seen += [e["seq"] for e in body["results"]]
        if not body["has_more"]:
            break
        after = body["results"][-1]["seq"]
    assert seen == list(range(start + 1, start + 6))


def test_at_the_latest_position_there_is_nothing_to_catch_up(acme):
    start, _ = five_events(acme)
    body = acme.admin.client.get(events_url(acme, start + 5)).json()
    assert body == {"results": [], "has_more": False, "latest_seq": start + 5}


def test_events_no_longer_retained_require_a_resync(acme):
    start, _ = five_events(acme)
    QueueEvent.objects.filter(tenant=acme.tenant, seq__lte=start + 2).delete()
    response = acme.viewer.client.get(events_url(acme, start))
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "resync_required"
    assert response.json()["error"]["latest_seq"] == start + 5
    # From a position still covered, catch-up works.
    assert [e["seq"] for e in acme.viewer.client.get(events_url(acme, start + 2)).json()["results"]] == [
        start + 3, start + 4, start + 5]


def test_a_position_ahead_of_the_stream_requires_a_resync(acme):
    start, _ = five_events(acme)
    response = acme.viewer.client.get(events_url(acme, start + 99))
    assert response.status_code == 410
    assert response.json()["error"]["latest_seq"] == start + 5


@pytest.mark.parametrize(
    "query", ["", "?after=-1", "?after=x", "?after=1&limit=0", "?after=1&limit=5000", "?after=1&tenant=globex"]
)
def test_malformed_catch_up_requests_are_400(acme, query):
    response = acme.viewer.client.get(acme.url(f"events/{query}"))
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid"


def test_events_of_another_tenant_are_invisible(acme, globex):
    # Both tenants have events, at the same sequence numbers: each sees only its own.
    _, acme_task = five_events(acme)
    _, globex_task = five_events(globex)
    five_events(globex)
    acme_events = acme.viewer.client.get(events_url(acme, 0)).json()
    assert [(e["seq"], e["task_id"]) for e in acme_events["results"]] == [(n, str(acme_task.pk)) for n in range(1, 6)]
    assert acme_events["latest_seq"] == 5
    globex_events = globex.viewer.client.get(events_url(globex, 0)).json()
    assert len(globex_events["results"]) == 10 and globex_events["latest_seq"] == 10
    assert str(acme_task.pk) not in {e.get("task_id") for e in globex_events["results"]}
    # A window past acme's own end is empty for acme, though globex has events there.
    assert acme.viewer.client.get(events_url(acme, 5)).json()["results"] == []
    # acme's events under globex's URL do not exist for an acme member...
    assert acme.viewer.client.get(events_url(globex, 0)).status_code == 404
    # ...nor for a globex member under acme's URL: 404, exactly like a missing tenant.
    assert globex.admin.client.get(events_url(acme, 0)).status_code == 404
    assert globex.admin.client.get("/api/v1/tenants/no-such-tenant/events/?after=0").status_code == 404


def test_catch_up_needs_credentials_and_a_role_that_reads_the_queue(acme, anon):
    assert anon.get(events_url(acme, 0)).status_code == 401
    assert acme.agent.client.get(events_url(acme, 0)).status_code == 403


# --- Tickets ------------------------------------------------------------------------------


def test_a_ticket_is_issued_for_a_member_who_may_follow_the_queue(acme):
    response = acme.reviewer.client.post("/api/v1/ws-ticket/", {"tenant": "acme"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["url"] == f"/ws/v1/tenants/acme/reviews/?ticket={body['ticket']}"
    ticket = WebsocketTicket.objects.get(tenant=acme.tenant)
    # Bound to the user, the tenant and the token it was minted with; stored hashed only.
    assert (ticket.user, ticket.api_token) == (acme.reviewer.user, ApiToken.objects.get(user=acme.reviewer.user))
    assert body["ticket"] not in ticket.key_hash and len(ticket.key_hash) == 64
    assert ticket.used_at is None
    assert timezone.now() < ticket.expires_at <= timezone.now() + TICKET_TTL


def test_a_session_user_gets_a_ticket_not_bound_to_a_token(acme):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=False)
    client.force_login(acme.viewer.user)
    response = client.post("/api/v1/ws-ticket/", {"tenant": "acme"}, format="json")
    assert response.status_code == 201, response.content
    assert WebsocketTicket.objects.get(tenant=acme.tenant).api_token is None


def test_ticket_refusals(acme, globex, anon):
    assert anon.post("/api/v1/ws-ticket/", {"tenant": "acme"}, format="json").status_code == 401
    # Another tenant is a 404 like one that does not exist.
    assert globex.admin.client.post("/api/v1/ws-ticket/", {"tenant": "acme"}, format="json").status_code == 404
    assert acme.admin.client.post("/api/v1/ws-ticket/", {"tenant": "nope"}, format="json").status_code == 404
    # Agents may not read the queue, so they get no websocket.
    response = acme.agent.client.post("/api/v1/ws-ticket/", {"tenant": "acme"}, format="json")
    assert response.status_code == 403
    # A removed member is a stranger.
    membership_remove(membership=acme.viewer.user.memberships.get(tenant=acme.tenant), actor=acme.admin.user, via="api")
    assert acme.viewer.client.post("/api/v1/ws-ticket/", {"tenant": "acme"}, format="json").status_code == 404
    # Unknown fields are named, not ignored.
    response = acme.admin.client.post("/api/v1/ws-ticket/", {"tenant": "acme", "user": "root"}, format="json")
    assert response.status_code == 400 and "user" in response.json()["error"]["fields"]
    assert not WebsocketTicket.objects.exists()


# --- Retention ----------------------------------------------------------------------------


def test_pruning_keeps_a_gap_free_suffix_and_drops_expired_tickets(acme, globex):
    start, _ = five_events(acme)
    globex_start, _ = five_events(globex)
    now = timezone.now()
    # acme's first three events are old, globex's are all recent.
    QueueEvent.objects.filter(tenant=acme.tenant, seq__lte=start + 3).update(created_at=now - timedelta(days=30))
    expired = websocket_ticket_create(tenant=acme.tenant, user=acme.viewer.user, now=now - timedelta(minutes=5))[0]
    fresh = websocket_ticket_create(tenant=acme.tenant, user=acme.viewer.user)[0]

    assert queue_events_prune(older_than=timedelta(days=7), now=now) == 3

    assert list(QueueEvent.objects.filter(tenant=acme.tenant).values_list("seq", flat=True)) == [start + 4, start + 5]
    assert QueueEvent.objects.filter(tenant=globex.tenant).count() == 5
    assert list(WebsocketTicket.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert expired.pk != fresh.pk
    assert acme.viewer.client.get(events_url(acme, start + 2)).status_code == 410
    assert acme.viewer.client.get(events_url(acme, start + 3)).status_code == 200


def test_prune_command(acme):
    start, _ = five_events(acme)
    QueueEvent.objects.filter(tenant=acme.tenant, seq=start + 1).update(created_at=timezone.now() - timedelta(days=2))
    out = StringIO()
    call_command("prune_queue_events", "--days", "1", stdout=out)
    assert "pruned 1 queue event(s)" in out.getvalue()
    assert not QueueEvent.objects.filter(tenant=acme.tenant, seq=start + 1).exists()
