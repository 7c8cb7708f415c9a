"""Webhooks: tenant admins register endpoints (API and admin); deliveries come from the
durable event log, reach a real local HTTP receiver signed so that the receiver can
verify them (Standard Webhooks), are retried with backoff after a 500 (the clock
injected through `now=`), are logged, and one receiver that hangs never delays another
endpoint's deliveries, nor the queue. Two schedulers racing deliver each event once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from reviews.models import QueueEvent, WebhookDelivery, WebhookEndpoint
from reviews.webhook_transport import webhook_post, webhook_secret_new
from reviews.webhooks import webhook_deliveries_dispatch, webhook_deliveries_fan_out, webhook_deliveries_run
from tenants.models import AuditRecord, Tenant
from tests.api_flow import pending, submit
from tests.factories import HIGH_RISK_TEXT
from tests.support import postgresql_only, race, receiver, wait_until

NOT_FOUND = {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}
TYPES = ["review.created", "review.resolved"]


@pytest.fixture
def local_receivers(settings):
    """Receivers here listen on 127.0.0.1, which the address guard refuses unless allowed."""
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    settings.WEBHOOK_CONCURRENCY = 4
    return settings


def register(world, url: str, types: list[str] = TYPES) -> dict:
    response = world.admin.client.post(world.url("webhooks/"), {"url": url, "event_types": types}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance: int = 300) -> bool:
    """What a receiver does (README, "Webhooks"), written here from the Standard Webhooks
    spec rather than with the product's own code."""
    msg_id, timestamp, signatures = headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, sig.split(",", 1)[1]) for sig in signatures.split() if sig.startswith("v1,"))


def delivery_of(endpoint_id: str) -> WebhookDelivery:
    return WebhookDelivery.objects.get(endpoint_id=endpoint_id)


# --- Registration over the API -------------------------------------------------------------


@pytest.mark.embedded
@pytest.mark.django_db
def test_an_admin_registers_an_endpoint_and_sees_its_secret_once(acme):
    created = register(acme, "https://hooks.example.com/acme/reviews")
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert created["event_types"] == TYPES and created["is_active"] is True
    assert created["secret_prefix"] == secret[:10]
    shown = acme.admin.client.get(acme.url(f"webhooks/{created['id']}/")).json()
    assert "secret" not in shown and shown["secret_prefix"] == secret[:10]
    assert "secret" not in acme.admin.client.get(acme.url("webhooks/")).json()["results"][0]

    rotated = acme.admin.client.post(acme.url(f"webhooks/{created['id']}/rotate-secret/")).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    changed = acme.admin.client.patch(acme.url(f"webhooks/{created['id']}/"), {"is_active": False, "event_types": ["review.expired"]},
                                      format="json")
    assert changed.status_code == 200 and changed.json()["event_types"] == ["review.expired"]
    assert acme.admin.client.delete(acme.url(f"webhooks/{created['id']}/")).status_code == 204
    actions = list(AuditRecord.objects.filter(tenant=acme.tenant, action__startswith="webhook.").order_by("id")
                   .values_list("action", flat=True))
    assert actions == ["webhook.created", "webhook.secret_rotated", "webhook.changed", "webhook.deleted"]


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "field"), [
    ({"url": "http://127.0.0.1:8000/hook", "event_types": TYPES}, "url"),  # loopback
    ({"url": "https://10.1.2.3/hook", "event_types": TYPES}, "url"),  # private
    ({"url": "https://169.254.169.254/latest/meta-data", "event_types": TYPES}, "url"),  # link-local (cloud metadata)
    ({"url": "https://[::1]/hook", "event_types": TYPES}, "url"),
    # IPv6 forms that carry 127.0.0.1: 6to4, NAT64, IPv4-compatible, IPv4-mapped
    ({"url": "https://[2002:7f00:1::]/hook", "event_types": TYPES}, "url"),
    ({"url": "https://[64:ff9b::7f00:1]/hook", "event_types": TYPES}, "url"),
    ({"url": "https://[::7f00:1]/hook", "event_types": TYPES}, "url"),
    ({"url": "https://[::ffff:127.0.0.1]/hook", "event_types": TYPES}, "url"),
    ({"url": "http://localhost:9000/hook", "event_types": TYPES}, "url"),
    ({"url": "https://user:pw@hooks.example.com/", "event_types": TYPES}, "url"),
    ({"url": "ftp://hooks.example.com/", "event_types": TYPES}, "url"),
    ({"url": "not a url", "event_types": TYPES}, "url"),
    ({"url": "https://hooks.example.com/", "event_types": []}, "event_types"),
    ({"url": "https://hooks.example.com/", "event_types": ["review.approved"]}, "event_types.0"),
    ({"url": "https://hooks.example.com/", "event_types": TYPES, "secret": "mine"}, "secret"),
])
def test_a_bad_registration_is_a_400_naming_the_field(acme, body, field):
    response = acme.admin.client.post(acme.url("webhooks/"), body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"], response.json()
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_private_addresses_are_allowed_when_the_setting_says_so(acme, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    assert register(acme, "http://127.0.0.1:8000/hook")["url"] == "http://127.0.0.1:8000/hook"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["reviewer", "senior", "viewer", "agent"])
def test_only_tenant_admins_manage_webhooks(acme, role):
    endpoint = register(acme, "https://hooks.example.com/acme")
    member = getattr(acme, role)
    calls = [
        member.client.get(acme.url("webhooks/")),
        member.client.post(acme.url("webhooks/"), {"url": "https://evil.example.com/", "event_types": TYPES}, format="json"),
        member.client.get(acme.url(f"webhooks/{endpoint['id']}/")),
        member.client.patch(acme.url(f"webhooks/{endpoint['id']}/"), {"is_active": False}, format="json"),
        member.client.delete(acme.url(f"webhooks/{endpoint['id']}/")),
        member.client.post(acme.url(f"webhooks/{endpoint['id']}/rotate-secret/")),
        member.client.get(acme.url(f"webhooks/{endpoint['id']}/deliveries/")),
    ]
    assert [r.status_code for r in calls] == [403] * len(calls)
    [row] = WebhookEndpoint.objects.all()
    assert row.is_active and row.url == "https://hooks.example.com/acme"


@pytest.mark.django_db
def test_another_tenants_webhooks_are_a_404(acme, globex):
    theirs = register(globex, "https://hooks.example.com/globex")
    paths = [f"webhooks/{theirs['id']}/", f"webhooks/{theirs['id']}/deliveries/"]
    for path in paths:
        for url in (acme.url(path), globex.url(path)):
            response = acme.admin.client.get(url)
            assert (response.status_code, response.json()) == (404, NOT_FOUND), url
    assert acme.admin.client.patch(acme.url(paths[0]), {"is_active": False}, format="json").status_code == 404
    assert acme.admin.client.delete(acme.url(paths[0])).status_code == 404
    assert acme.admin.client.post(acme.url(f"webhooks/{theirs['id']}/rotate-secret/")).status_code == 404
    assert acme.admin.client.get(acme.url("webhooks/")).json()["results"] == []
    row = WebhookEndpoint.objects.get(pk=theirs["id"])
    assert row.is_active and row.secret == theirs["secret"]


# --- Deliveries to a real receiver ------------------------------------------------------------


@pytest.mark.embedded
@pytest.mark.django_db(transaction=True)
def test_a_delivery_reaches_the_receiver_signed_once(acme, local_receivers):
    with receiver() as hook:
        endpoint = register(acme, hook.url)
        contract = submit(acme, HIGH_RISK_TEXT)  # review.created, then (not subscribed) nothing else
        task = pending(contract)["legal"]
        acme.reviewer.client.post(acme.url(f"reviews/{task.pk}/claim/"))  # review.claimed: not subscribed
        assert webhook_deliveries_run() >= 1
        wait_until(lambda: hook.requests, what="the delivery")
        wait_until(lambda: delivery_of(endpoint["id"]).status == "succeeded", what="its outcome recorded")
        webhook_deliveries_run()  # nothing new: nothing sent again

        [request] = hook.requests
        assert verify(endpoint["secret"], request.headers, request.body)
        assert not verify(endpoint["secret"], request.headers, request.body.replace(b"legal", b"LEGAL"))
        assert not verify("whsec_" + base64.b64encode(b"0" * 32).decode(), request.headers, request.body)
        payload = json.loads(request.body)
        assert payload["type"] == "review.created"
        assert payload["data"]["tenant"] == "acme" and payload["data"]["task_id"] == str(task.pk)
        assert payload["data"]["seq"] == QueueEvent.objects.get(task=task, type="review.created").seq
        assert request.headers["content-type"] == "application/json"

        delivery = delivery_of(endpoint["id"])
        assert request.headers["webhook-id"] == delivery.message_id
        assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (1, 200, "")
        log = acme.admin.client.get(acme.url(f"webhooks/{endpoint['id']}/deliveries/")).json()["results"]
        assert [(d["event_type"], d["status"], d["attempts"]) for d in log] == [("review.created", "succeeded", 1)]


@pytest.mark.embedded
@pytest.mark.django_db(transaction=True)
def test_a_500_is_retried_with_exponential_backoff(acme, local_receivers):
    local_receivers.WEBHOOK_RETRY_BASE_SECONDS = 10
    local_receivers.WEBHOOK_RETRY_MAX_SECONDS = 3600
    with receiver(answer=lambda index: 500 if index < 2 else 200) as hook:
        endpoint = register(acme, hook.url, ["review.created"])
        submit(acme, HIGH_RISK_TEXT)
        t0 = timezone.now()
        webhook_deliveries_run(now=t0)
        wait_until(lambda: delivery_of(endpoint["id"]).attempts == 1, what="the first attempt recorded")
        first = delivery_of(endpoint["id"])
        assert (first.status, first.last_status_code) == ("pending", 500)
        assert first.last_error == "HTTP 500: receiver says 500"
        # 10 s after the first failure (with up to 20% jitter, never later).
        assert t0 + timedelta(seconds=8) <= first.next_attempt_at <= t0 + timedelta(seconds=10)
        assert webhook_deliveries_dispatch(now=first.next_attempt_at - timedelta(milliseconds=1)) == 0

        t1 = first.next_attempt_at
        assert webhook_deliveries_dispatch(now=t1) == 1
        wait_until(lambda: delivery_of(endpoint["id"]).attempts == 2, what="the second attempt recorded")
        second = delivery_of(endpoint["id"])
        # Then 20 s: the backoff doubles.
        assert t1 + timedelta(seconds=16) <= second.next_attempt_at <= t1 + timedelta(seconds=20)

        assert webhook_deliveries_dispatch(now=second.next_attempt_at) == 1
        wait_until(lambda: delivery_of(endpoint["id"]).status == "succeeded", what="the third attempt")
        done = delivery_of(endpoint["id"])
        assert [a["status_code"] for a in done.attempt_log] == [500, 500, 200]
        assert len(hook.requests) == 3
        # One message: every attempt carries the same id, each signed anew.
        assert {r.headers["webhook-id"] for r in hook.requests} == {done.message_id}
        assert all(verify(endpoint["secret"], r.headers, r.body) for r in hook.requests)


@pytest.mark.django_db(transaction=True)
def test_after_the_last_attempt_a_delivery_fails_and_an_admin_sends_it_again(acme, local_receivers):
    local_receivers.WEBHOOK_MAX_ATTEMPTS = 2
    with receiver(answer=lambda index: 503 if index < 2 else 204) as hook:
        endpoint = register(acme, hook.url, ["review.created"])
        submit(acme, HIGH_RISK_TEXT)
        webhook_deliveries_run()
        wait_until(lambda: delivery_of(endpoint["id"]).attempts == 1, what="attempt 1")
        webhook_deliveries_dispatch(now=delivery_of(endpoint["id"]).next_attempt_at)
        wait_until(lambda: delivery_of(endpoint["id"]).status == "failed", what="the delivery failed")
        failed = delivery_of(endpoint["id"])
        assert failed.next_attempt_at is None and failed.attempts == 2

        url = acme.url(f"webhooks/{endpoint['id']}/deliveries/{failed.pk}/retry/")
        assert acme.reviewer.client.post(url).status_code == 403
        assert acme.admin.client.post(url).json()["status"] == "pending"
        assert acme.admin.client.post(url).status_code == 409  # not failed any more
        webhook_deliveries_run()
        wait_until(lambda: delivery_of(endpoint["id"]).status == "succeeded", what="sent again")
        assert len(hook.requests) == 3


@pytest.mark.embedded
@pytest.mark.django_db(transaction=True)
def test_a_receiver_that_hangs_delays_no_other_endpoint_nor_the_queue(acme, local_receivers):
    local_receivers.WEBHOOK_TIMEOUT_SECONDS = 60  # the hang outlasts the test unless released
    with receiver(hang=True, path="/slow") as slow, receiver(path="/fast") as fast:
        slow_endpoint = register(acme, slow.url, ["review.created", "review.claimed"])
        fast_endpoint = register(acme, fast.url, ["review.created", "review.claimed"])
        task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
        webhook_deliveries_run()  # returns at once: the requests are on sender threads
        wait_until(lambda: fast.requests and slow.arrived.is_set(), what="both first requests")
        assert len(slow.requests) == 1  # in flight, unanswered
        assert WebhookDelivery.objects.get(endpoint_id=slow_endpoint["id"]).attempts == 0

        # The queue goes on: a claim, and its event reaches the fast endpoint while the
        # slow one is still waiting on its first answer.
        assert acme.reviewer.client.post(acme.url(f"reviews/{task.pk}/claim/")).status_code == 200
        webhook_deliveries_run()
        wait_until(lambda: len(fast.requests) == 2, what="the fast endpoint's second delivery")
        assert [json.loads(r.body)["type"] for r in fast.requests] == ["review.created", "review.claimed"]
        assert len(slow.requests) == 1 and not slow.release.is_set()
        slow_states = set(WebhookDelivery.objects.filter(endpoint_id=slow_endpoint["id"]).values_list("attempts", flat=True))
        assert slow_states == {0}  # still the first request, the second waits behind it
        # The receiver has the request before its sender thread records the answer.
        wait_until(lambda: set(WebhookDelivery.objects.filter(endpoint_id=fast_endpoint["id"])
                               .values_list("status", flat=True)) == {"succeeded"},
                   what="the fast endpoint's deliveries recorded as succeeded")

        slow.release.set()
        wait_until(lambda: WebhookDelivery.objects.filter(endpoint_id=slow_endpoint["id"], status="succeeded").count() == 1,
                   what="the slow endpoint's first delivery answered")


@pytest.mark.django_db(transaction=True)
def test_a_request_past_its_timeout_is_a_failed_attempt(acme, local_receivers):
    local_receivers.WEBHOOK_TIMEOUT_SECONDS = 1
    with receiver(hang=True) as hook:
        endpoint = register(acme, hook.url, ["review.created"])
        submit(acme, HIGH_RISK_TEXT)
        webhook_deliveries_run()
        wait_until(lambda: delivery_of(endpoint["id"]).attempts == 1, what="the timed-out attempt recorded")
        delivery = delivery_of(endpoint["id"])
        assert delivery.status == "pending" and delivery.last_error.startswith("timeout after 1 s")
        assert delivery.last_status_code is None


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_timeout():
    with receiver(trickle=True) as hook:
        attempt = webhook_post(url=hook.url, secret=webhook_secret_new(), msg_id="msg_trickle", body=b"{}",
                               timeout=1, allow_private=True)
    assert not attempt.ok and attempt.error.startswith("timeout after 1 s")
    assert attempt.duration_ms < 3000  # one byte every 0.2 s would have kept it for 2,000 s


@pytest.mark.django_db(transaction=True)
def test_the_address_guard_holds_at_send_time(acme, local_receivers):
    with receiver() as hook:
        endpoint = register(acme, hook.url, ["review.created"])  # allowed at registration...
        local_receivers.WEBHOOK_ALLOW_PRIVATE_URLS = False  # ...not any more when it is sent
        submit(acme, HIGH_RISK_TEXT)
        webhook_deliveries_run()
        wait_until(lambda: delivery_of(endpoint["id"]).attempts == 1, what="the refused attempt")
        assert delivery_of(endpoint["id"]).last_error == "refused: 127.0.0.1 resolves to a private address (127.0.0.1)"
        assert hook.requests == []


@pytest.mark.django_db
def test_an_endpoint_gets_the_events_after_it_was_registered_and_counts_what_was_pruned(acme, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    submit(acme, HIGH_RISK_TEXT)  # before the endpoint: not delivered
    endpoint = register(acme, "https://hooks.example.com/acme", ["review.created"])
    submit(acme, HIGH_RISK_TEXT)
    assert webhook_deliveries_fan_out() == 1
    assert webhook_deliveries_fan_out() == 0
    row = WebhookEndpoint.objects.get(pk=endpoint["id"])
    assert row.last_seq == Tenant.objects.get(pk=acme.tenant.pk).event_seq

    # Events pruned from the log before the fan-out saw them (a scheduler away for days).
    submit(acme, HIGH_RISK_TEXT)
    QueueEvent.objects.filter(tenant=acme.tenant, seq__gt=row.last_seq).delete()
    assert webhook_deliveries_fan_out() == 0
    row.refresh_from_db()
    assert row.events_missed == 1 and row.last_seq == Tenant.objects.get(pk=acme.tenant.pk).event_seq


@pytest.mark.django_db
def test_a_paused_endpoint_collects_its_deliveries_and_gets_them_once_active(acme, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    endpoint = register(acme, "https://hooks.example.com/acme", ["review.created"])
    WebhookEndpoint.objects.filter(pk=endpoint["id"]).update(is_active=False)
    submit(acme, HIGH_RISK_TEXT)
    assert webhook_deliveries_fan_out() == 1  # kept for it, not lost when the log is pruned
    row = WebhookEndpoint.objects.get(pk=endpoint["id"])
    assert row.last_seq == Tenant.objects.get(pk=acme.tenant.pk).event_seq and row.events_missed == 0
    assert delivery_of(endpoint["id"]).attempts == 0


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_two_schedulers_racing_deliver_every_event_once(acme, local_receivers):
    with receiver() as hook:
        endpoint = register(acme, hook.url, ["review.created", "review.claimed", "review.released"])
        tasks = [pending(submit(acme, HIGH_RISK_TEXT, title=f"MSA {i}"))["legal"] for i in range(10)]
        for task in tasks:
            acme.reviewer.client.post(acme.url(f"reviews/{task.pk}/claim/"))
            acme.reviewer.client.post(acme.url(f"reviews/{task.pk}/release/"))
        expected = QueueEvent.objects.filter(tenant=acme.tenant, type__in=["review.created", "review.claimed",
                                                                            "review.released"]).count()
        assert expected == 30
        fanned = race(2, lambda i: webhook_deliveries_fan_out())
        assert [kind for kind, _ in fanned] == ["ok", "ok"] and sum(v for _, v in fanned) == expected, fanned
        assert WebhookDelivery.objects.filter(endpoint_id=endpoint["id"]).count() == expected
        # Two dispatchers racing (as two leaders would, in two processes): each claim once.
        for _ in range(4):
            race(2, lambda i: webhook_deliveries_dispatch())
            wait_until(lambda: not WebhookDelivery.objects.filter(endpoint_id=endpoint["id"], lease_until__isnull=False).exists(),
                       what="the senders' outcomes")
            if not WebhookDelivery.objects.filter(endpoint_id=endpoint["id"], status="pending").exists():
                break
        assert WebhookDelivery.objects.filter(endpoint_id=endpoint["id"], status="succeeded").count() == expected
        ids = [r.headers["webhook-id"] for r in hook.requests]
        assert len(ids) == expected == len(set(ids))


# --- The admin ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_registers_endpoints_and_shows_the_delivery_log(acme, globex, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    acme.admin.user.is_staff = True
    acme.admin.user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(acme.admin.user)
    add = "/admin/reviews/webhookendpoint/add/"
    refused = client.post(add, {"tenant": str(acme.tenant.pk), "url": "http://127.0.0.1/hook",
                                "event_types": ["review.created"], "is_active": "on"})
    assert refused.status_code == 200 and "url" in refused.context["adminform"].form.errors
    saved = client.post(add, {"tenant": str(acme.tenant.pk), "url": "https://hooks.example.com/a",
                              "event_types": ["review.created", "review.expired"], "is_active": "on"}, follow=True)
    endpoint = WebhookEndpoint.objects.get(tenant=acme.tenant)
    assert endpoint.event_types == ["review.created", "review.expired"]
    assert endpoint.secret in saved.content.decode()  # shown once, in the message
    assert AuditRecord.objects.filter(action="webhook.created", interface="admin").count() == 1

    register(globex, "https://hooks.example.com/g")
    submit(acme, HIGH_RISK_TEXT)
    submit(globex, HIGH_RISK_TEXT)
    webhook_deliveries_fan_out()
    log = client.get("/admin/reviews/webhookdelivery/")
    assert log.status_code == 200
    assert [d.endpoint_id for d in log.context["cl"].result_list] == [endpoint.pk]
    assert "hooks.example.com/g" not in log.content.decode()
