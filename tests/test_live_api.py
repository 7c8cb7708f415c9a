"""The API as a client meets it on a freshly started server process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.live import free_port, processes
from tests.support import postgresql_only

pytestmark = [postgresql_only, pytest.mark.django_db(transaction=True)]


def test_the_schema_answers_concurrent_first_requests(acme):
    with processes() as running:
        server = running.server()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: httpx.get(f"{server.http}/api/v1/schema/", timeout=60, trust_env=False),
                                    range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert len({a.content for a in answers}) == 1


def test_without_its_database_the_api_answers_json_503_and_health_says_why(acme):
    # Nothing listens on this port: the server starts, and every query fails at connect.
    dead = f"postgres://postgres@127.0.0.1:{free_port()}/hitl"
    with processes() as running:
        server = running.server(DATABASE_URL=dead)
        with server.client(acme.reviewer.token) as client:
            for method, path in [("GET", acme.url("reviews/")), ("POST", acme.url("contracts/")),
                                 ("GET", "/api/v1/tenants/acme/contracts/not-a-uuid/")]:
                answer = client.request(method, path, json={"title": "MSA", "text": "x"} if method == "POST" else None)
                if path.endswith("not-a-uuid/"):
                    assert answer.status_code == 404  # unroutable: no database needed to say so
                    continue
                assert answer.status_code == 503, answer.text
                assert answer.headers["content-type"].startswith("application/json")
                assert answer.json()["error"]["code"] == "service_unavailable"
                assert answer.headers["Retry-After"] == "5"
            assert client.get("/healthz").status_code == 200
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["database"] == "failed"
        assert server.alive
