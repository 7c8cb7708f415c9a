"""Static files come from the ASGI server itself (WhiteNoise inside the app): the admin's
stylesheets and the API docs' Swagger UI and ReDoc assets (drf-spectacular-sidecar, no
network), in production hashed, compressed and cached for a year, in DEBUG straight
from the apps. Against a real `uvicorn config.asgi:application` after a real
`collectstatic`, on the embedded default and on PostgreSQL."""

from __future__ import annotations

import re

import httpx
import pytest
from django.db import connection

from tests.live import Product, live_product
from tests.support import child_database_url, wait_until

# django_db: the test database must exist (and be named) before the fixture points a server at it.
pytestmark = [pytest.mark.embedded, pytest.mark.django_db]

ON_POSTGRES = connection.vendor == "postgresql"


@pytest.fixture(scope="module")
def production(django_db_setup, django_db_blocker) -> Product:
    """DEBUG off: served from what collectstatic left in STATIC_ROOT. On PostgreSQL on
    the test database (migrated by the test run), on the embedded default on a file."""
    with django_db_blocker.unblock():
        test_database = child_database_url() if ON_POSTGRES else None
    # Named, so the teardown can tell the server's sessions from the test run's own.
    database_url = f"{test_database}{'&' if '?' in test_database else '?'}application_name={APP_NAME}" \
        if test_database else None
    with live_product(debug=False, worker=False, seed=False, database_url=database_url,
                      migrate=not ON_POSTGRES) as product:
        yield product
    if test_database:
        # The stopped server's sessions end a moment after it does; the test run drops
        # this database at its end, which fails while any is left.
        wait_until(lambda: not _server_sessions(test_database), what="the server's sessions to end", bound=30)


APP_NAME = "hitl-static-test"


def _server_sessions(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1), autocommit=True) as probe:
        return probe.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                             [APP_NAME]).fetchone()[0]


def get(product: Product, path: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{product.http}{path}", headers=headers, timeout=30, trust_env=False)


def linked(html: str, pattern: str) -> str:
    match = re.search(rf'(?:href|src)="(/static/{pattern})"', html)
    assert match, f"no link to {pattern} in the page"
    return match.group(1)


def test_the_admin_links_hashed_stylesheets_served_as_css_compressed_and_cached(production):
    assert get(production, "/readyz").status_code == 200  # on its database, PostgreSQL or SQLite
    page = get(production, "/admin/login/")
    assert page.status_code == 200
    css = linked(page.text, r"admin/css/base\.[0-9a-f]{12}\.css")

    response = get(production, css, **{"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert response.headers.get("content-encoding") == "gzip"
    assert "immutable" in response.headers["cache-control"]
    assert "body" in response.text  # httpx decoded the gzip: a real stylesheet
    # Streamed from a worker thread (config.asgi_http), not read whole with a warning.
    assert "synchronous iterators" not in production.log("server")


def test_the_api_docs_assets_are_served_offline(production):
    for docs, asset in [
        ("/api/v1/docs/", r"drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle\.[0-9a-f]{12}\.js"),
        ("/api/v1/redoc/", r"drf_spectacular_sidecar/redoc/bundles/redoc\.standalone\.[0-9a-f]{12}\.js"),
    ]:
        page = get(production, docs)
        assert page.status_code == 200, docs
        response = get(production, linked(page.text, asset))
        assert response.status_code == 200, asset
        assert "javascript" in response.headers["content-type"]
        assert len(response.content) > 100_000  # the bundle itself, not an error page


def test_an_unknown_static_file_is_a_404(production):
    assert get(production, "/static/admin/css/no-such-file.css").status_code == 404


@pytest.mark.skipif(ON_POSTGRES, reason="DEBUG serving reads no database; once, on the embedded default")
def test_in_debug_the_files_come_straight_from_the_apps():
    with live_product(debug=True, worker=False, seed=False) as product:
        page = get(product, "/admin/login/")
        assert '/static/admin/css/base.css"' in page.text
        response = get(product, "/static/admin/css/base.css")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/css")
