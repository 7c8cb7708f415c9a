"""Every route of the LangGraph prefixes x method x caller: the status the `roles` of its
view promise (and, for runs, the role the kind of run needs), 404 for a member of
another tenant, and for another tenant's object exactly the body of a missing one.

The route list comes from the URL resolver, so a route added without a row fails
`test_every_route_and_method_has_a_row`. Refused requests leave the database as it was.
Runs are recorded but not driven (their checkpoints are shared by every test of the
module; a test's rollback does not undo the checkpointer's writes)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import reverse

from contracts.models import Contract, Run
from contracts.services import contract_thread_create, thread_run_create
from reviews.models import ReviewTask
from tenants.models import AuditRecord
from tests.contracts.platform.flow import GRAPH, client
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT, LOW_RISK_TEXT
from tests.support import url_patterns_walk
from tests.tenants.module_worlds import committed_worlds

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

PREFIXES = ("langgraph/<slug:tenant_slug>/", "agent-inbox/<slug:tenant_slug>/")
ROLES = ("viewer", "reviewer", "senior", "admin", "agent")
EVERY = frozenset(ROLES)
PEOPLE = frozenset({"viewer", "reviewer", "senior", "admin"})
SUBMITTERS = frozenset({"reviewer", "senior", "admin", "agent"})
DECIDERS = frozenset({"reviewer", "senior", "admin"})  # legal is routed to the reviewers' team
RUNNERS = SUBMITTERS | DECIDERS
ADMIN = frozenset({"admin"})


def expect(ok: int, allowed: frozenset[str]) -> dict[str, int]:
    return {"anonymous": 401, "other_tenant": 404, **{role: ok if role in allowed else 403 for role in ROLES}}


PUBLIC = {"anonymous": 200, "other_tenant": 200, **{role: 200 for role in ROLES}}

MATRIX: dict[tuple[str, str], dict[str, int]] = {
    ("langgraph-ok", "GET"): PUBLIC,
    ("langgraph-info", "GET"): PUBLIC,
    ("langgraph-assistant-search", "POST"): expect(200, EVERY),
    ("langgraph-assistant-detail", "GET"): expect(200, EVERY),
    ("langgraph-thread-create", "POST"): expect(200, SUBMITTERS),
    ("langgraph-thread-search", "POST"): expect(200, EVERY),
    ("langgraph-thread-count", "POST"): expect(200, EVERY),
    ("langgraph-thread-detail", "GET"): expect(200, EVERY),
    ("langgraph-thread-detail", "PATCH"): expect(200, SUBMITTERS),
    ("langgraph-thread-state", "GET"): expect(200, EVERY),
    ("langgraph-thread-state", "POST"): expect(200, ADMIN),  # the resolve: a cancel
    ("langgraph-run-list", "GET"): expect(200, EVERY),
    # A resume of the legal task: the agent may start runs (its input) but not decide.
    ("langgraph-run-list", "POST"): expect(200, DECIDERS),
    ("langgraph-run-wait", "POST"): expect(200, DECIDERS),
    ("langgraph-run-stream", "POST"): expect(200, DECIDERS),
    ("langgraph-run-detail", "GET"): expect(200, EVERY),
    ("langgraph-run-join", "GET"): expect(200, EVERY),
    ("langgraph-run-join-stream", "GET"): expect(200, EVERY),
    ("langgraph-run-cancel", "POST"): expect(409, RUNNERS),  # a run is never taken back
    # A contract's input on a new thread.
    ("langgraph-stateless-run", "POST"): expect(200, SUBMITTERS),
    ("langgraph-stateless-run-wait", "POST"): expect(200, SUBMITTERS),
    ("langgraph-stateless-run-stream", "POST"): expect(200, SUBMITTERS),
    ("agent-inbox-ok", "GET"): PUBLIC,
    ("agent-inbox-info", "GET"): PUBLIC,
    ("agent-inbox-assistant-search", "POST"): expect(200, EVERY),
    ("agent-inbox-assistant-detail", "GET"): expect(200, EVERY),
    ("agent-inbox-thread-search", "POST"): expect(200, PEOPLE),
    ("agent-inbox-thread-count", "POST"): expect(200, PEOPLE),
    ("agent-inbox-thread-detail", "GET"): expect(200, PEOPLE),
    ("agent-inbox-thread-state", "GET"): expect(200, PEOPLE),
    ("agent-inbox-thread-state", "POST"): expect(200, ADMIN),
    ("agent-inbox-run-list", "GET"): expect(200, PEOPLE),
    ("agent-inbox-run-list", "POST"): expect(200, DECIDERS),
    ("agent-inbox-run-wait", "POST"): expect(200, DECIDERS),
    ("agent-inbox-run-stream", "POST"): expect(200, DECIDERS),
    ("agent-inbox-run-detail", "GET"): expect(200, PEOPLE),
    ("agent-inbox-run-join", "GET"): expect(200, PEOPLE),
    ("agent-inbox-run-join-stream", "GET"): expect(200, PEOPLE),
}

# route -> {URL kwarg: the object it names}. Native threads are contracts; Agent Inbox
# threads are review tasks. Runs: the finance decision recorded when the world was built.
OBJECTS: dict[str, dict[str, str]] = {
    "langgraph-assistant-detail": {"assistant_id": "assistant"},
    "agent-inbox-assistant-detail": {"assistant_id": "assistant"},
    **{
        name: {"thread_id": "contract"}
        for name in (
            "langgraph-thread-detail",
            "langgraph-thread-state",
            "langgraph-run-list",
            "langgraph-run-wait",
            "langgraph-run-stream",
        )
    },
    **{
        name: {"thread_id": "contract", "run_id": "run"}
        for name in ("langgraph-run-detail", "langgraph-run-join", "langgraph-run-join-stream", "langgraph-run-cancel")
    },
    **{
        name: {"thread_id": "legal"}
        for name in (
            "agent-inbox-thread-detail",
            "agent-inbox-thread-state",
            "agent-inbox-run-list",
            "agent-inbox-run-wait",
            "agent-inbox-run-stream",
        )
    },
    **{
        name: {"thread_id": "finance", "run_id": "run"}
        for name in ("agent-inbox-run-detail", "agent-inbox-run-join", "agent-inbox-run-join-stream")
    },
}


def body_for(name: str, method: str, objects: "Objects") -> Any:
    if method == "PATCH":
        return {"metadata": {"matrix": True}}
    if name.endswith("thread-state") and method == "POST":
        return {"values": None, "as_node": "__end__"}
    if name.startswith("langgraph-stateless-run"):
        return {"assistant_id": GRAPH, "input": {"contract_text": LOW_RISK_TEXT, "title": "NDA"}}
    if name.startswith("langgraph-run") and method == "POST" and name != "langgraph-run-cancel":
        return {"assistant_id": GRAPH, "command": {"resume": {objects.legal.interrupt_id: {"decision": "approve"}}}}
    if name.startswith("agent-inbox-run") and method == "POST":
        return {"assistant_id": GRAPH, "command": {"resume": [{"type": "accept", "args": None}]}}
    return {} if method == "POST" else None


# --- Discovery --------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str
    view_class: type
    methods: frozenset[str]
    kwargs: frozenset[str]


def routes() -> dict[str, Route]:
    found = {}
    for pattern, route, kwargs in url_patterns_walk():
        if route.startswith(PREFIXES):
            view = pattern.callback.view_class
            methods = frozenset(m.upper() for m in view.http_method_names if m != "options" and hasattr(view, m))
            assert pattern.name and pattern.name not in found, route
            found[pattern.name] = Route(pattern.name, view, methods, kwargs - {"tenant_slug"})
    return found


def test_every_route_and_method_has_a_row():
    discovered = {(name, method) for name, route in routes().items() for method in route.methods}
    assert discovered == set(MATRIX), (sorted(discovered - set(MATRIX)), sorted(set(MATRIX) - discovered))
    for name, route in routes().items():
        assert route.kwargs == set(OBJECTS.get(name, {})), name


def test_the_matrix_agrees_with_the_roles_of_every_view():
    """Method-level roles of each view; the rows for runs narrow them by the kind of run."""
    role_of = {
        "viewer": "viewer",
        "reviewer": "reviewer",
        "senior": "senior_reviewer",
        "admin": "admin",
        "agent": "agent",
    }
    for (name, method), row in MATRIX.items():
        if row is PUBLIC:
            continue
        allowed = routes()[name].view_class.roles.get(method, frozenset())
        for caller, role in role_of.items():
            if role not in allowed:
                assert row[caller] == 403, f"{name} {method} {caller}: the view refuses, the table allows"


# --- The world --------------------------------------------------------------------------


@dataclass
class Objects:
    contract: Contract  # its thread: legal pending, finance decided
    legal: ReviewTask
    finance: ReviewTask
    run: Run  # the finance decision

    def ids(self, name: str) -> dict[str, Any]:
        by_kind = {
            "contract": self.contract.pk,
            "legal": self.legal.pk,
            "finance": self.finance.pk,
            "run": self.run.pk,
            "assistant": GRAPH,
        }
        return {kwarg: by_kind[kind] for kwarg, kind in OBJECTS.get(name, {}).items()}


def _objects(world) -> Objects:
    contract = contract_thread_create(tenant=world.tenant, created_by=world.agent.user, metadata={})
    # Autocommit here: the immediate task backend drives each run as it commits.
    thread_run_create(
        tenant=world.tenant,
        contract_id=contract.pk,
        user=world.agent.user,
        via="langgraph",
        input={"title": f"{world.slug} MSA", "text": HIGH_RISK_LARGE_PAYMENT_TEXT},
    )
    finance = ReviewTask.objects.get(contract=contract, kind="finance")
    run, _ = thread_run_create(
        tenant=world.tenant,
        contract_id=contract.pk,
        user=world.reviewer2.user,
        via="langgraph",
        answers={finance.interrupt_id: {"decision": "approve"}},
    )
    return Objects(
        contract=contract,
        legal=ReviewTask.objects.get(contract=contract, kind="legal"),
        finance=ReviewTask.objects.get(pk=finance.pk),
        run=run,
    )


@pytest.fixture(scope="module")
def _module_world(django_db_setup, django_db_blocker):
    with committed_worlds(
        django_db_blocker, lambda acme, globex: (acme, globex, _objects(acme), _objects(globex))
    ) as built:
        yield built


@pytest.fixture
def world(_module_world, db):
    return _module_world


def _url(name: str, slug: str, ids: dict[str, Any]) -> str:
    return reverse(name, kwargs={"tenant_slug": slug, **ids})


def _call(member, name: str, method: str, path: str, payload: Any):
    api = client(member)
    send = getattr(api, method.lower())
    return send(path, payload, format="json") if payload is not None else send(path)


def _state() -> tuple:
    return (
        Contract.objects.count(),
        Run.objects.count(),
        AuditRecord.objects.count(),
        sorted(ReviewTask.objects.values_list("pk", "status")),
    )


CASES = [(name, method, caller, status) for (name, method), row in MATRIX.items() for caller, status in row.items()]


@pytest.mark.parametrize(("name", "method", "caller", "expected"), CASES, ids=[f"{n} {m} {c}" for n, m, c, _ in CASES])
def test_route_method_caller(world, name, method, caller, expected):
    acme, globex, objects, _ = world
    member = (
        {"anonymous": None, "other_tenant": globex.admin}[caller]
        if caller in ("anonymous", "other_tenant")
        else getattr(acme, caller)
    )
    before = _state()
    response = _call(member, name, method, _url(name, acme.slug, objects.ids(name)), body_for(name, method, objects))
    # Only the status and the headers: a stream of a run that is not driven would not end.
    assert response.status_code == expected, f"{name} {method} {caller}: {response.status_code}"
    if expected >= 400:
        assert response["Content-Type"] == "application/json"
        assert _state() == before, f"{name} {method} {caller}: a refused request changed the database"


OBJECT_ROUTES = sorted(
    {(name, method) for (name, method) in MATRIX if OBJECTS.get(name)}
    - {("langgraph-assistant-detail", "GET"), ("agent-inbox-assistant-detail", "GET")}
)


@pytest.mark.parametrize(("name", "method"), OBJECT_ROUTES, ids=[f"{n} {m}" for n, m in OBJECT_ROUTES])
def test_another_tenants_object_is_exactly_a_missing_object(world, name, method):
    acme, _, acme_objects, globex_objects = world
    missing_ids = {kwarg: uuid.uuid4() for kwarg in OBJECTS[name]}
    foreign_ids = globex_objects.ids(name)
    before = _state()
    foreign = _call(acme.admin, name, method, _url(name, acme.slug, foreign_ids), body_for(name, method, acme_objects))
    missing = _call(acme.admin, name, method, _url(name, acme.slug, missing_ids), body_for(name, method, acme_objects))
    assert foreign.status_code == missing.status_code == 404, name
    # The same body, but for the ids it names.
    assert _without(foreign.content.decode(), foreign_ids) == _without(missing.content.decode(), missing_ids)
    assert _state() == before


def _without(text: str, ids: dict[str, Any]) -> str:
    for value in ids.values():
        text = text.replace(str(value), "<id>")
    return text
