"""Liveness and readiness probes: unauthenticated, and free of tenant data."""

from __future__ import annotations

import pytest

from config import health

pytestmark = pytest.mark.django_db


def test_healthz_is_200_without_credentials(anon):
    response = anon.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_with_every_check_ok(anon, acme):
    response = anon.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "checkpointer", "cache", "task_backend"}
    assert set(body["checks"].values()) == {"ok"}


def test_probes_carry_no_tenant_data(anon, acme, globex):
    for path in ("/healthz", "/readyz"):
        response = anon.get(path)
        text = response.content.decode()
        assert set(response.json()) <= {"status", "checks"}
        for world in (acme, globex):
            assert world.slug not in text and str(world.tenant.id) not in text
            assert world.admin.user.username not in text and world.admin.token not in text
        assert "Set-Cookie" not in response.headers


def test_readyz_is_503_naming_the_failed_check_without_the_error(anon, monkeypatch):
    def broken() -> None:
        raise RuntimeError("password=hunter2 host=db.internal")

    monkeypatch.setitem(health.CHECKS, "checkpointer", broken)
    response = anon.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["checkpointer"] == "failed"
    assert body["checks"]["database"] == "ok"
    assert "hunter2" not in response.content.decode() and "db.internal" not in response.content.decode()


def test_probes_ignore_credentials(acme):
    # A token is neither needed nor checked; a broken one does not turn a probe into a 401.
    acme.admin.client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert acme.admin.client.get("/healthz").status_code == 200
    assert acme.admin.client.get("/readyz").status_code == 200
