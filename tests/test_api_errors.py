"""The API's promise, "every error is {"error": ...}", where DRF's handler never runs:
in DEBUG (the embedded default's mode) too, for a missing trailing slash, an id of the
wrong shape and an unknown route; and `Authorization: Bearer` beside `Token`."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from tests.api_flow import pending, submit
from tests.factories import HIGH_RISK_TEXT

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture(params=[True, False], ids=["debug", "production"])
def debug(request, settings) -> bool:
    settings.DEBUG = request.param
    return request.param


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def assert_json_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"], body


def test_a_post_without_the_trailing_slash_is_redirected_keeping_its_method(acme, debug):
    url = acme.url("contracts/").rstrip("/")
    response = acme.agent.client.post(url, {"title": "MSA", "text": HIGH_RISK_TEXT}, format="json")
    assert response.status_code == 308
    assert response["Location"].endswith("/contracts/")
    followed = acme.agent.client.post(url, {"title": "MSA", "text": HIGH_RISK_TEXT}, format="json", follow=True)
    assert followed.status_code == 202 and followed.json()["title"] == "MSA"


@pytest.mark.parametrize("path", ["reviews/not-a-uuid/", "reviews/not-a-uuid/resume/", "contracts/42/", "nope/"])
def test_unroutable_paths_are_json_404s(acme, debug, path):
    assert_json_error(acme.reviewer.client.get(acme.url(path)), 404, "not_found")
    assert_json_error(acme.reviewer.client.post(acme.url(path), {}, format="json"), 404, "not_found")


def test_an_unknown_api_route_outside_a_tenant_is_a_json_404(acme, debug):
    assert_json_error(acme.reviewer.client.get("/api/v2/anything/"), 404, "not_found")


def test_pages_outside_the_api_keep_their_html(acme, debug):
    response = acme.reviewer.client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_bearer_is_accepted_beside_token(acme, debug):
    response = bearer(acme.viewer.token).get(acme.url("contracts/"))
    assert response.status_code == 200, response.content
    assert_json_error(bearer("not-a-token").get(acme.url("contracts/")), 401, "authentication_failed")
    assert_json_error(bearer("").get(acme.url("contracts/")), 401, "authentication_failed")


def test_bearer_of_another_tenant_is_a_404_and_a_viewer_may_not_decide(acme, globex, debug):
    contract = submit(acme, HIGH_RISK_TEXT)
    task = pending(contract)["legal"]
    assert_json_error(bearer(globex.admin.token).get(acme.url(f"reviews/{task.pk}/")), 404, "not_found")
    assert_json_error(bearer(globex.admin.token).get(acme.url(f"reviews/{uuid.uuid4()}/")), 404, "not_found")
    refused = bearer(acme.viewer.token).post(acme.url(f"reviews/{task.pk}/resume/"), {"decision": "approve"},
                                             format="json")
    assert_json_error(refused, 403, "forbidden")
