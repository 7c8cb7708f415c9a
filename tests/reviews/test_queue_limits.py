"""Limits on the queue API: body size (413), contract size (400 naming `text`), and the
per-token rate limit (429 with Retry-After), each with the one error body."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from contracts.models import Contract
from contracts.services import contract_submit
from reviews.models import ReviewTask
from tenants.services import api_token_create
from tests.factories import HIGH_RISK_TEXT

pytestmark = pytest.mark.django_db(transaction=True)


def legal_task(world) -> ReviewTask:
    contract = contract_submit(tenant=world.tenant, submitted_by=world.agent.user, title="MSA", text=HIGH_RISK_TEXT)
    return ReviewTask.objects.get(contract=contract, kind="legal")


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and isinstance(error["fields"], dict)
    return error


# --- Body size -----------------------------------------------------------------------------


def test_a_body_over_the_upload_limit_is_413_on_every_write(acme):
    task = legal_task(acme)
    too_big = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    writes = [
        (acme.agent, "contracts/", {"title": "big", "text": too_big}),
        (acme.reviewer, f"reviews/{task.pk}/resume/", {"decision": "approve", "comment": too_big}),
        (acme.reviewer, "reviews/batch-resume/", {"items": [{"id": str(task.pk), "decision": "approve", "comment": too_big}]}),
    ]
    for member, path, body in writes:
        response = member.client.post(acme.url(path), body, format="json")
        assert_error(response, 413, "payload_too_large")
    assert Contract.objects.count() == 1
    task.refresh_from_db()
    assert task.status == "pending"


def test_an_oversized_body_from_a_non_member_or_a_viewer_is_refused_before_it_is_read(acme, globex):
    too_big = {"title": "big", "text": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)}
    # Membership and role are checked first: no 413 (and no parsing) for callers who may not post.
    foreign = globex.agent.client.post(acme.url("contracts/"), too_big, format="json")
    assert_error(foreign, 404, "not_found")
    viewer = acme.viewer.client.post(acme.url("contracts/"), too_big, format="json")
    assert_error(viewer, 403, "forbidden")
    assert not Contract.objects.exists()


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=4096)
def test_the_upload_limit_is_the_setting(acme):
    response = acme.agent.client.post(acme.url("contracts/"), {"title": "t", "text": HIGH_RISK_TEXT * 20}, format="json")
    assert_error(response, 413, "payload_too_large")
    assert acme.agent.client.post(acme.url("contracts/"), {"title": "t", "text": HIGH_RISK_TEXT}, format="json").status_code == 202


def test_contract_text_over_the_limit_is_400_naming_text(acme):
    limit = settings.CONTRACT_TEXT_MAX_CHARS
    assert limit == 200_000
    response = acme.agent.client.post(acme.url("contracts/"), {"title": "long", "text": "a" * (limit + 1)}, format="json")
    error = assert_error(response, 400, "invalid")
    assert list(error["fields"]) == ["text"]
    assert error["message"].startswith("text:")
    assert not Contract.objects.exists()
    # Exactly at the limit is accepted.
    accepted = acme.agent.client.post(acme.url("contracts/"), {"title": "long", "text": "a" * limit}, format="json")
    assert accepted.status_code == 202, accepted.content[:500]


# --- Rate limit ------------------------------------------------------------------------------


@pytest.fixture
def three_per_minute():
    # The throttle counts live in the shared cache (Redis): start and end with none.
    cache.clear()
    with override_settings(API_THROTTLE_RATE="3/minute"):
        yield
    cache.clear()


def test_the_fourth_request_of_a_token_is_429_with_retry_after(acme, three_per_minute):
    for _ in range(3):
        assert acme.reviewer.client.get(acme.url("reviews/")).status_code == 200
    refused = acme.reviewer.client.get(acme.url("reviews/"))
    assert_error(refused, 429, "throttled")
    assert 0 < int(refused["Retry-After"]) <= 60
    # The budget is the token's, on every endpoint.
    assert acme.reviewer.client.get(acme.url(f"reviews/{uuid.uuid4()}/")).status_code == 429

    # Other tokens are counted apart: another member's, and another token of the same user.
    assert acme.reviewer2.client.get(acme.url("reviews/")).status_code == 200
    _, second_key = api_token_create(user=acme.reviewer.user, name="second")
    second = APIClient()
    second.credentials(HTTP_AUTHORIZATION=f"Token {second_key}")
    assert second.get(acme.url("reviews/")).status_code == 200


def test_throttled_writes_have_no_effect(acme, three_per_minute):
    task = legal_task(acme)
    for _ in range(3):
        acme.reviewer.client.get(acme.url("reviews/"))
    refused = acme.reviewer.client.post(acme.url(f"reviews/{task.pk}/resume/"), {"decision": "approve"}, format="json")
    assert_error(refused, 429, "throttled")
    task.refresh_from_db()
    assert task.status == "pending"


def test_a_foreign_tenant_does_not_spend_or_see_another_tenants_budget(acme, globex, three_per_minute):
    for _ in range(3):
        assert globex.reviewer.client.get(globex.url("reviews/")).status_code == 200
    assert globex.reviewer.client.get(globex.url("reviews/")).status_code == 429
    for _ in range(3):
        assert acme.reviewer.client.get(acme.url("reviews/")).status_code == 200
