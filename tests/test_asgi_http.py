"""HTTP through the ASGI application (config.asgi), whose handler runs the synchronous
middleware chain and view in one thread hop (config.asgi_http)."""

from __future__ import annotations

import contextvars
import json
import threading

import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction
from channels.testing import HttpCommunicator
from django.core.handlers.asgi import ASGIHandler
from django.db import connections

from config.asgi import application
from config.asgi_http import SyncStackASGIHandler
from tests.factories import HIGH_RISK_TEXT
from tests.support import postgresql_only

# The app serves requests on its own threads, which see only committed rows.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]


def _request(method: str, path: str, *, token: str | None = None, body: bytes = b"") -> tuple[int, dict, dict]:
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if token:
        headers.append((b"authorization", f"Token {token}".encode()))
    communicator = HttpCommunicator(application, method, path, body=body, headers=headers)
    response = async_to_sync(communicator.get_response)(timeout=30)
    response_headers = {k.decode().lower(): v.decode() for k, v in response["headers"]}
    return response["status"], response_headers, json.loads(response["body"] or b"null")


def test_the_middleware_chain_is_synchronous():
    # One hop for the whole chain; Django's own handler would run an async chain that
    # hops to a thread for every middleware hook.
    assert not iscoroutinefunction(SyncStackASGIHandler()._middleware_chain)
    assert iscoroutinefunction(ASGIHandler()._middleware_chain)


def test_requests_run_through_views_middleware_and_errors(acme, globex):
    status, _, body = _request("GET", "/healthz")
    assert (status, body) == (200, {"status": "ok"})

    status, headers, body = _request(
        "POST", acme.url("contracts/"), token=acme.agent.token,
        body=json.dumps({"title": "MSA", "text": HIGH_RISK_TEXT}).encode(),
    )
    assert status == 202, body
    assert headers["location"].endswith(f"/contracts/{body['id']}/")
    # Middleware ran: the security middleware's headers are on the response.
    assert headers["x-content-type-options"] == "nosniff"

    status, _, detail = _request("GET", acme.url(f"contracts/{body['id']}/"), token=acme.reviewer.token)
    assert status == 200 and detail["id"] == body["id"]

    # Another tenant's contract is a 404 with the JSON error body, not an HTML page.
    status, _, error = _request("GET", globex.url(f"contracts/{body['id']}/"), token=globex.reviewer.token)
    assert status == 404 and error["error"]["code"] == "not_found"

    status, _, error = _request("POST", acme.url("contracts/"), token=acme.agent.token, body=b'{"title": ')
    assert status == 400 and error["error"]["code"] == "parse_error"

    status, _, error = _request("GET", acme.url("contracts/"))
    assert status == 401


@postgresql_only
def test_each_request_gives_its_database_connection_back_to_the_pool(acme):
    pool = connections["default"].pool

    def checked_out() -> int:
        stats = pool.get_stats()
        return stats["pool_size"] - stats["pool_available"]

    before = checked_out()  # this test's own connection, at least
    for _ in range(20):
        status, _, _ = _request("GET", acme.url("contracts/"), token=acme.reviewer.token)
        assert status == 200
    # Not one connection more is checked out than before the requests: a request that
    # kept its connection would leave one more each time (the pool grows to lend it).
    assert checked_out() == before
    assert pool.get_stats().get("requests_waiting", 0) == 0


def test_requests_run_on_the_kept_request_threads_each_in_a_fresh_context(acme):
    """No thread is started for a request (Django's handler starts one per request), and
    nothing one request sets in its context reaches the next on the same thread."""
    from django.core.signals import request_started

    from config.asgi_http import REQUEST_THREADS

    seen: list[tuple[str, object]] = []
    marker = contextvars.ContextVar("marker", default=None)

    def started(**kwargs) -> None:
        seen.append((threading.current_thread().name, marker.get()))
        marker.set("set by an earlier request")

    request_started.connect(started)
    try:
        for _ in range(12):
            status, _, _ = _request("GET", acme.url("contracts/"), token=acme.reviewer.token)
            assert status == 200
    finally:
        request_started.disconnect(started)
    names = {name for name, _ in seen}
    assert len(seen) == 12 and all(name.startswith("request_") for name in names)
    assert len(names) <= REQUEST_THREADS
    assert {value for _, value in seen} == {None}
