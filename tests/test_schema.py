"""The OpenAPI document and the docs page, and the API checked against its own document
by schemathesis: every operation, valid and invalid data, as a tenant admin."""

from __future__ import annotations

import json
import re

import hypothesis
import pytest
import schemathesis
import yaml
from django.contrib.staticfiles import finders
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from hypothesis import HealthCheck, Phase
from hypothesis.errors import Unsatisfiable
from rest_framework.test import APIClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from contracts.platform.serializers import ASSISTANT_ID
from contracts.services import contract_submit
from reviews.models import ReviewTask, WebhookDelivery, WebhookEndpoint
from tenants.models import ApiToken, Membership
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT

# The app is called in-process through WSGI, and Django closes the connection after each
# request: the fixture data must be committed, not inside a test transaction.
pytestmark = pytest.mark.django_db(transaction=True)

HTTP_METHODS = ("get", "post", "put", "patch", "delete")
CONFORMANCE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def schema_json(client: APIClient) -> dict:
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200, response.content[:500]
    return json.loads(response.content)


# --- The document ----------------------------------------------------------------------------


def test_schema_is_openapi_3_served_without_credentials(anon, acme):
    response = anon.get("/api/v1/schema/")
    assert response.status_code == 200
    assert "openapi" in response["Content-Type"]
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] and document["paths"]
    assert document == schema_json(anon)
    assert {"tokenAuth"} <= set(document["components"]["securitySchemes"])
    assert "Bearer <key>" in document["components"]["securitySchemes"]["tokenAuth"]["description"]
    # The document is the same for everyone and names no tenant.
    text = response.content.decode()
    assert "acme" not in text and str(acme.tenant.id) not in text
    assert yaml.safe_load(acme.admin.client.get("/api/v1/schema/").content) == document


def _routes(patterns, prefix: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def _openapi_path(route: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


# The REST API, and the LangGraph-compatible API with its Agent Inbox prefix.
DOCUMENTED_PREFIXES = ("api/v1/", "langgraph/", "agent-inbox/")
DETAIL_PREFIXES = ("/langgraph/", "/agent-inbox/")


def api_routes() -> dict[str, set[str]]:
    """Every /api/v1/ (and LangGraph prefix) route the URL resolver knows, with the
    methods its view handles, except the schema and docs views themselves."""
    routes: dict[str, set[str]] = {}
    for route, callback in _routes(get_resolver().url_patterns):
        if not route.startswith(DOCUMENTED_PREFIXES):
            continue
        view = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        if view is not None and issubclass(view, (SpectacularAPIView, SpectacularSwaggerView, SpectacularRedocView)):
            continue
        assert "^" not in route and "(?P" not in route, f"regex route {route!r}: extend this test to read it"
        if view is None:
            methods = {"get"}  # a function view: at least its GET must be documented
        else:
            allowed = getattr(view, "http_method_names", HTTP_METHODS)
            methods = {m for m in HTTP_METHODS if m in allowed and hasattr(view, m)}
        routes.setdefault(_openapi_path(route), set()).update(methods)
    return routes


def test_schema_documents_every_api_route_and_method(anon):
    documented = {path: {m for m in item if m in HTTP_METHODS} for path, item in schema_json(anon)["paths"].items()}
    routes = api_routes()
    assert len(routes) >= 15  # the resolver walk found the API, not nothing
    undocumented = {path: sorted(methods - documented.get(path, set())) for path, methods in routes.items()}
    assert {path: m for path, m in undocumented.items() if m} == {}
    # And nothing is documented that does not exist.
    assert set(documented) <= set(routes)
    for path, methods in documented.items():
        assert methods <= routes[path], path


def test_every_operation_documents_the_error_body(anon):
    """Every error response is {"error": {"code", "message", ...}} (under the LangGraph
    prefixes {"detail", "code", ...}, as LangGraph Platform answers), and every operation
    documents at least the errors any request can meet (no credentials, not a member,
    throttled); /ok and /info need no credentials."""
    document = schema_json(anon)

    def resolved(schema: dict) -> dict:
        while "$ref" in schema:
            schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            label = f"{method.upper()} {path}"
            responses = operation["responses"]
            detail_format = path.startswith(DETAIL_PREFIXES)
            if detail_format and path.endswith(("/ok", "/info")):
                assert not [code for code in responses if code.startswith("4")], label
                continue
            assert {"401", "429"} <= set(responses), f"{label}: {sorted(responses)}"
            if "{tenant_slug}" in path:
                assert "404" in responses, label
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    body = resolved(response["content"]["application/json"]["schema"])
                    if detail_format:
                        assert {"detail", "code"} <= set(body["required"]), f"{label} {code}"
                        continue
                    assert body["required"] == ["error"], f"{label} {code}"
                    detail = resolved(body["properties"]["error"])
                    assert {"code", "message"} <= set(detail["properties"]), f"{label} {code}"


def test_docs_page_loads_its_assets_locally(anon):
    response = anon.get("/api/v1/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    # No CDN: nothing is fetched from another origin, absolute or protocol-relative.
    assert not re.search(r"https?://", html), re.findall(r"https?://\S+", html)
    assert not re.search(r"""(?:src|href|url)\s*[=:]\s*["']//""", html)
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not a static file of this project"
    assert 'url: "/api/v1/schema/"' in html


# --- What schemathesis found, pinned as regression tests --------------------------------


def test_an_id_of_the_wrong_shape_is_the_json_404(acme):
    """A path whose id does not match its converter never reaches DRF. Regression:
    Django's HTML "Not Found" page answered instead of the documented JSON error body."""
    paths = ("reviews/not-a-uuid/", "contracts/1234/", "members/1.5/", "reviews/not-a-uuid/resume/", "nothing-here/")
    for path in paths:
        response = acme.admin.client.get(acme.url(path))
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json", path
        assert response.json() == {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}, path
    # Outside the API the site keeps Django's own page.
    assert APIClient().get("/no-such-page/")["Content-Type"].startswith("text/html")


def test_a_non_object_batch_item_gets_a_documented_outcome(anon, acme):
    """Regression: the outcome of a non-object item has "id": null, which the documented
    BatchResumeOutcome.id (a non-nullable string) did not allow."""
    outcome_schema = schema_json(anon)["components"]["schemas"]["BatchResumeOutcome"]
    response = acme.admin.client.post(acme.url("reviews/batch-resume/"), {"items": [7]}, format="json")
    assert response.status_code == 200
    [outcome] = response.json()["results"]
    assert outcome["outcome"] == "invalid"
    id_schema = outcome_schema["properties"]["id"]
    assert outcome["id"] is not None or id_schema.get("nullable") is True, (outcome, id_schema)


def test_token_operations_on_a_non_agent_answer_a_documented_status(anon, acme):
    """Token operations are for agents; for anyone else they answer 409. Regression: the
    list and revoke operations did not document that 409."""
    paths = schema_json(anon)["paths"]
    viewer = Membership.objects.get(tenant=acme.tenant, user=acme.viewer.user)
    token = ApiToken.objects.get(user=acme.viewer.user)
    calls = [
        ("get", "/api/v1/tenants/{tenant_slug}/members/{member_id}/tokens/", f"members/{viewer.pk}/tokens/"),
        ("post", "/api/v1/tenants/{tenant_slug}/members/{member_id}/tokens/{token_id}/revoke/",
         f"members/{viewer.pk}/tokens/{token.pk}/revoke/"),
    ]
    for method, documented, path in calls:
        response = getattr(acme.admin.client, method)(acme.url(path))
        assert response.status_code < 500
        assert str(response.status_code) in paths[documented][method]["responses"], (method, path, response.status_code)


# --- schemathesis over every operation ------------------------------------------------------


def documented_operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation, read at collection time so each gets a test.
    The same generator serves /api/v1/schema/ (no request, no database needed)."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    return sorted((method.upper(), path) for path, item in document["paths"].items() for method in item if method in HTTP_METHODS)


OPERATIONS = documented_operations()


@pytest.fixture
def real_ids(acme) -> dict[str, str]:
    """Objects of acme for the path parameters, so that valid requests reach real rows
    (a resume that resolves, a claim that holds, a grant that is written)."""
    contract = contract_submit(tenant=acme.tenant, submitted_by=acme.agent.user, title="MSA", text=HIGH_RISK_LARGE_PAYMENT_TEXT)
    legal = ReviewTask.objects.get(contract=contract, kind="legal")
    finance = ReviewTask.objects.get(contract=contract, kind="finance")
    viewer = Membership.objects.get(tenant=acme.tenant, user=acme.viewer.user)
    agent = Membership.objects.get(tenant=acme.tenant, user=acme.agent.user)
    # Token operations are for agents: their member is the agent, other member
    # operations work on the viewer (never on the admin whose token makes the calls).
    webhook = WebhookEndpoint.objects.create(tenant=acme.tenant, url="https://hooks.example.com/acme",
                                             event_types=["review.created"], secret="whsec_" + "A" * 44)
    delivery = WebhookDelivery.objects.create(tenant=acme.tenant, endpoint=webhook, seq=1, event_type="review.created",
                                              body="{}", status="failed", attempts=3)
    return {"task_id": str(legal.pk), "reviews/{object_id}": str(finance.pk), "contract_id": str(contract.pk),
            "contracts/{object_id}": str(contract.pk), "member_id": str(viewer.pk),
            "{member_id}/tokens": str(agent.pk), "token_id": str(ApiToken.objects.get(user=acme.agent.user).pk),
            "webhook_id": str(webhook.pk), "delivery_id": str(delivery.pk),
            # The LangGraph prefixes: the contract's thread, and (Agent Inbox) its finance task's.
            "langgraph/{tenant_slug}/threads/{thread_id}": str(contract.pk),
            "agent-inbox/{tenant_slug}/threads/{thread_id}": str(finance.pk),
            "assistant_id": ASSISTANT_ID}


def _pins(path: str, operation, ids: dict[str, str]) -> dict[str, str]:
    """Path parameter -> real id; a key like "reviews/{object_id}" applies to paths that
    contain it and wins over a plain parameter name."""
    pins = {}
    for parameter in operation.path_parameters:
        name = parameter.name
        contextual = [key for key in ids if "{" + name + "}" in key and key in path]
        if contextual:
            pins[name] = ids[contextual[0]]
        elif name in ids:
            pins[name] = ids[name]
    return pins


def _run(operation, *, mode: GenerationMode, path_parameters: dict, token: str, examples: int, seen: list) -> None:
    strategy = operation.as_strategy(
        generation_mode=mode,
        path_parameters=path_parameters,
        headers={"Authorization": f"Token {token}"},
    )

    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        # No shrinking: it could multiply the calls; the failing example is reported as is.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case) -> None:
        response = case.call()
        seen.append(response.status_code)
        case.validate_response(response, checks=CONFORMANCE_CHECKS)

    try:
        check()
    except Unsatisfiable:
        # Nothing left to make invalid once the path is pinned (e.g. GET .../members/).
        if mode is not GenerationMode.NEGATIVE:
            raise


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p.removeprefix('/api/v1/tenants/{tenant_slug}')}" for m, p in OPERATIONS])
def test_operation_conforms_to_its_schema(acme, real_ids, method, path):
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)
    operation = schema[path][method]
    tenant = {"tenant_slug": "acme"} if any(p.name == "tenant_slug" for p in operation.path_parameters) else {}
    pinned = {**tenant, **_pins(path, operation, real_ids)}
    statuses: list[int] = []
    # Valid data against real objects, invalid query/body/headers against them, and
    # invalid path parameters (ids of the wrong shape).
    _run(operation, mode=GenerationMode.POSITIVE, path_parameters=pinned, token=acme.admin.token, examples=8, seen=statuses)
    _run(operation, mode=GenerationMode.NEGATIVE, path_parameters=pinned, token=acme.admin.token, examples=8, seen=statuses)
    if set(pinned) != set(tenant):
        _run(operation, mode=GenerationMode.NEGATIVE, path_parameters=tenant, token=acme.admin.token, examples=5, seen=statuses)
    assert statuses, "no request was made"
    assert all(status < 500 for status in statuses)
