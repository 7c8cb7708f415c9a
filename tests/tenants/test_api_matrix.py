"""Every API route x method x caller: the status the `roles` of its view promise, and a
404 for another tenant's objects with exactly the body of a missing one.

The route list comes from the URL resolver, so a route added without a row in MATRIX
fails `test_every_api_route_and_method_has_a_row_in_the_matrix`. Refused requests must
leave the database as it was; allowed writes must change it."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from django.test import TestCase
from django.urls import reverse
from rest_framework.test import APIClient

from contracts.models import Contract, ContractGroupPermission, ContractUserPermission
from contracts.services import contract_submit
from reviews.models import (
    IdempotencyRecord,
    QueueEvent,
    ReviewComment,
    ReviewPolicy,
    ReviewTask,
    ReviewTaskGroupPermission,
    ReviewTaskUserPermission,
    WebhookDelivery,
    WebhookEndpoint,
    WebsocketTicket,
)
from reviews.services import review_task_claim
from reviews.stream import STREAM_ROLES
from tenants.apis import TenantAPIView
from tenants.models import DECIDING_ROLES, ApiToken, AuditRecord, Membership, Role, Tenant
from tenants.services import membership_set
from tests.conftest import Member
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT, LOW_RISK_TEXT, member_create
from tests.support import url_patterns_walk
from tests.tenants.module_worlds import committed_worlds

API_PREFIX = "api/v1/"
TENANT_PREFIX = "api/v1/tenants/<slug:tenant_slug>/"
NOT_FOUND_BODY = {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}

# --- The expectation table --------------------------------------------------------------

MEMBER_ROLES = ("viewer", "reviewer", "senior", "admin", "agent")
ROLE_VALUES = {"admin": Role.ADMIN, "senior": Role.SENIOR_REVIEWER, "reviewer": Role.REVIEWER,
               "viewer": Role.VIEWER, "agent": Role.AGENT}

EVERY_MEMBER = frozenset(MEMBER_ROLES)
PEOPLE = frozenset({"viewer", "reviewer", "senior", "admin"})  # humans: not the agent
SUBMITTERS = frozenset({"reviewer", "senior", "admin", "agent"})
DECIDERS = frozenset({"reviewer", "senior", "admin"})
ADMIN = frozenset({"admin"})


def expect(ok: int, allowed: frozenset[str]) -> dict[str, int]:
    """Anonymous: 401. A member of another tenant: 404, as if acme did not exist.
    A member whose role may not use the method: 403."""
    return {
        "anonymous": 401,
        "other_tenant": 404,
        **{role: ok if role in allowed else 403 for role in MEMBER_ROLES},
    }


# (route name, method) -> caller -> status. Read off the `roles` dict of each view.
MATRIX: dict[tuple[str, str], dict[str, int]] = {
    ("contract-list", "GET"): expect(200, EVERY_MEMBER),
    ("contract-list", "POST"): expect(202, SUBMITTERS),  # saved; its run is queued
    ("contract-detail", "GET"): expect(200, EVERY_MEMBER),
    ("contract-retry", "POST"): expect(202, ADMIN),  # of a contract made `failed` just before (PREPARE)
    ("review-list", "GET"): expect(200, PEOPLE),
    ("review-detail", "GET"): expect(200, PEOPLE),
    # On acme's legal task, which is routed to the reviewers' team.
    ("review-resume", "POST"): expect(202, DECIDERS),
    ("review-batch-resume", "POST"): expect(200, DECIDERS),
    ("review-claim", "POST"): expect(200, DECIDERS),
    ("review-release", "POST"): expect(200, DECIDERS),  # of a claim the caller took just before (PREPARE)
    ("review-cancel", "POST"): expect(200, ADMIN),
    ("review-grants", "GET"): expect(200, ADMIN),
    ("review-grants", "POST"): expect(200, ADMIN),
    ("review-grants-revoke", "POST"): expect(200, ADMIN),
    ("contract-grants", "GET"): expect(200, ADMIN),
    ("contract-grants", "POST"): expect(200, ADMIN),
    ("contract-grants-revoke", "POST"): expect(200, ADMIN),
    ("member-list", "GET"): expect(200, ADMIN),
    ("member-list", "POST"): expect(201, ADMIN),
    ("member-detail", "GET"): expect(200, ADMIN),
    ("member-detail", "PATCH"): expect(200, ADMIN),
    ("member-detail", "DELETE"): expect(204, ADMIN),
    ("member-tokens", "GET"): expect(200, ADMIN),
    ("member-tokens", "POST"): expect(201, ADMIN),
    ("member-token-revoke", "POST"): expect(200, ADMIN),
    ("audit-list", "GET"): expect(200, ADMIN),
    ("queue-event-list", "GET"): expect(200, PEOPLE),
    # Time on the queue, webhooks, retention, reassign and comments.
    ("review-reassign", "POST"): expect(200, ADMIN),
    ("review-comments", "GET"): expect(200, PEOPLE),
    ("review-comments", "POST"): expect(201, DECIDERS),  # on the legal task: the reviewers' team
    ("review-policies", "GET"): expect(200, ADMIN),
    ("review-policies", "PATCH"): expect(200, ADMIN),
    ("webhook-list", "GET"): expect(200, ADMIN),
    ("webhook-list", "POST"): expect(201, ADMIN),
    ("webhook-detail", "GET"): expect(200, ADMIN),
    ("webhook-detail", "PATCH"): expect(200, ADMIN),
    ("webhook-detail", "DELETE"): expect(204, ADMIN),
    ("webhook-rotate-secret", "POST"): expect(200, ADMIN),
    ("webhook-deliveries", "GET"): expect(200, ADMIN),
    ("webhook-delivery-retry", "POST"): expect(200, ADMIN),  # of a delivery made `failed` just before (PREPARE)
    ("retention", "GET"): expect(200, ADMIN),
    ("retention", "PATCH"): expect(200, ADMIN),
    # Outside the tenant prefix: the tenant is named in the body (see TENANT_IN_BODY).
    ("ws-ticket", "POST"): expect(201, PEOPLE),
}

# Routes under /api/v1/ that belong to no tenant: public documentation, no token needed.
PUBLIC = {
    ("schema", "GET"): 200,
    ("docs", "GET"): 200,
    ("redoc", "GET"): 200,
}

# Routes under /api/v1/ but outside /tenants/<slug>/ that take the tenant from the body.
TENANT_IN_BODY = {"ws-ticket"}

# route -> {URL kwarg: kind of object it names}
OBJECT_KIND: dict[str, dict[str, str]] = {
    "contract-detail": {"contract_id": "contract"},
    "contract-retry": {"contract_id": "contract"},
    "review-detail": {"task_id": "task"},
    "review-resume": {"task_id": "task"},
    "review-claim": {"task_id": "task"},
    "review-release": {"task_id": "task"},
    "review-cancel": {"task_id": "task"},
    "review-grants": {"object_id": "task"},
    "review-grants-revoke": {"object_id": "task"},
    "contract-grants": {"object_id": "contract"},
    "contract-grants-revoke": {"object_id": "contract"},
    "member-detail": {"member_id": "member"},
    "member-tokens": {"member_id": "agent"},
    "member-token-revoke": {"member_id": "agent", "token_id": "token"},
    "review-reassign": {"task_id": "task"},
    "review-comments": {"task_id": "task"},
    "webhook-detail": {"webhook_id": "webhook"},
    "webhook-rotate-secret": {"webhook_id": "webhook"},
    "webhook-deliveries": {"webhook_id": "webhook"},
    "webhook-delivery-retry": {"webhook_id": "webhook", "delivery_id": "delivery"},
}

# Query strings a route requires.
QUERIES = {"queue-event-list": "?after=0"}

# A valid body wherever one is needed, so the status reflects authorisation, not
# validation. Each takes the tenant world and its objects.
BODIES: dict[tuple[str, str], Callable[[Any, "Objects"], dict]] = {
    ("contract-list", "POST"): lambda w, o: {"title": "Matrix NDA", "text": LOW_RISK_TEXT},
    ("review-resume", "POST"): lambda w, o: {"decision": "approve"},
    ("review-batch-resume", "POST"): lambda w, o: {"items": [{"id": str(o.legal.pk), "decision": "approve"}]},
    ("review-grants", "POST"): lambda w, o: {"user": f"{w.slug}-reviewer2"},
    ("review-grants-revoke", "POST"): lambda w, o: {"user": f"{w.slug}-reviewer2"},
    ("contract-grants", "POST"): lambda w, o: {"user": f"{w.slug}-reviewer2"},
    ("contract-grants-revoke", "POST"): lambda w, o: {"user": f"{w.slug}-reviewer2"},
    ("member-list", "POST"): lambda w, o: {"username": f"{w.slug}-newcomer", "role": "viewer"},
    ("member-detail", "PATCH"): lambda w, o: {"role": "reviewer"},
    ("member-tokens", "POST"): lambda w, o: {"name": "matrix-bot"},
    ("ws-ticket", "POST"): lambda w, o: {"tenant": w.slug},
    ("review-reassign", "POST"): lambda w, o: {"user": f"{w.slug}-senior"},
    ("review-comments", "POST"): lambda w, o: {"body": "Matrix note: clause 7."},
    ("review-policies", "PATCH"): lambda w, o: {"legal": {"due_after_seconds": 7200}},
    ("webhook-list", "POST"): lambda w, o: {"url": f"https://hooks.example.com/{w.slug}", "event_types": ["review.created"]},
    ("webhook-detail", "PATCH"): lambda w, o: {"is_active": False},
    ("retention", "PATCH"): lambda w, o: {"checkpoint_retention_days": 7},
}


def body_for(name: str, method: str, world, objects: "Objects") -> dict | None:
    make = BODIES.get((name, method))
    return make(world, objects) if make else None


def _claim_first(world, objects: "Objects", user) -> None:
    """A release needs a live claim: the caller's own if their role may claim at all."""
    membership = Membership.objects.filter(tenant=world.tenant, user=user).first() if user else None
    holder = user if membership is not None and membership.role in DECIDING_ROLES else world.reviewer.user
    review_task_claim(tenant=world.tenant, task_id=objects.legal.pk, user=holder, via="api")


def _fail_contract(world, objects: "Objects", user) -> None:
    """A retry is for a contract whose retries ran out."""
    Contract.objects.filter(tenant=world.tenant, pk=objects.contract.pk).update(status="failed")


def _fail_delivery(world, objects: "Objects", user) -> None:
    """Only a failed delivery is sent again."""
    WebhookDelivery.objects.filter(tenant=world.tenant, pk=objects.delivery.pk).update(status="failed")


# What must hold before the call: (tenant world, its objects, calling user or None).
PREPARE: dict[tuple[str, str], Callable[[Any, "Objects", Any], None]] = {
    ("review-release", "POST"): _claim_first,
    ("contract-retry", "POST"): _fail_contract,
    ("webhook-delivery-retry", "POST"): _fail_delivery,
}


# --- Discovery from the URL resolver ----------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str
    route: str
    view_class: type
    methods: frozenset[str]
    kwargs: frozenset[str]


def api_routes() -> dict[str, Route]:
    """Every named pattern under /api/v1/, with its view class and the methods it implements."""
    routes = {}
    for pattern, route, kwargs in url_patterns_walk():
        if not route.startswith(API_PREFIX):
            continue
        view_class = getattr(pattern.callback, "view_class", None)
        assert view_class is not None, f"{route}: not a class-based view"
        assert pattern.name, f"{route}: has no name"
        methods = frozenset(
            m.upper() for m in view_class.http_method_names if m != "options" and hasattr(view_class, m)
        )
        assert pattern.name not in routes, f"route name {pattern.name} used twice"
        routes[pattern.name] = Route(pattern.name, route, view_class, methods, kwargs)
    return routes


def test_every_api_route_and_method_has_a_row_in_the_matrix():
    routes = api_routes()
    discovered = {(name, method) for name, route in routes.items() for method in route.methods}
    expected = set(MATRIX) | set(PUBLIC)
    assert discovered == expected, (
        f"routes without a row: {sorted(discovered - expected)}; rows without a route: {sorted(expected - discovered)}"
    )
    for name, route in routes.items():
        if (name, "GET") in PUBLIC:
            continue
        if name in TENANT_IN_BODY:
            assert not route.route.startswith(TENANT_PREFIX)
            continue
        assert route.route.startswith(TENANT_PREFIX), f"{route.route}: an API route outside any tenant"
        # A plain APIView here would skip the tenant membership check.
        assert issubclass(route.view_class, TenantAPIView), f"{route.route}: {route.view_class} is not a TenantAPIView"
        assert route.kwargs - {"tenant_slug"} == set(OBJECT_KIND.get(name, {})), f"{route.route}: object kinds unknown"


def test_the_matrix_agrees_with_the_roles_dict_of_every_view():
    """The table is read off the views' `roles`; a change to one names the row to update."""
    routes = api_routes()
    for (name, method), row in MATRIX.items():
        if name in TENANT_IN_BODY:
            continue  # no `roles` dict: see test_ws_ticket_roles_follow_the_stream_roles
        allowed = routes[name].view_class.roles.get(method, frozenset())
        for caller, role in ROLE_VALUES.items():
            assert (row[caller] != 403) == (role in allowed), f"{name} {method} {caller}: table and roles disagree"


def test_ws_ticket_roles_follow_the_stream_roles():
    row = MATRIX["ws-ticket", "POST"]
    for caller, role in ROLE_VALUES.items():
        assert (row[caller] != 403) == (role in STREAM_ROLES), caller


# --- The world the calls run against ----------------------------------------------------


@dataclass
class Objects:
    contract: Contract  # legal and finance review pending
    legal: ReviewTask
    finance: ReviewTask
    member: Membership  # the viewer's: the target of member-detail
    agent: Membership  # the agent's: its tokens are managed by the admin
    token: ApiToken  # the agent's
    webhook: WebhookEndpoint
    delivery: WebhookDelivery  # the webhook's, of the legal task's review.created


def _objects(world) -> Objects:
    # The immediate task backend runs the graph when the submit commits.
    with TestCase.captureOnCommitCallbacks(execute=True):
        contract = contract_submit(tenant=world.tenant, submitted_by=world.agent.user, title=f"{world.slug} MSA",
                                   text=HIGH_RISK_LARGE_PAYMENT_TEXT)
    tasks = {t.kind: t for t in ReviewTask.objects.filter(contract=contract)}
    assert set(tasks) == {"legal", "finance"}
    webhook = WebhookEndpoint.objects.create(tenant=world.tenant, url=f"https://hooks.example.com/{world.slug}",
                                             event_types=["review.created"], secret="whsec_" + "A" * 44)
    created = QueueEvent.objects.get(tenant=world.tenant, task=tasks["legal"], type="review.created")
    delivery = WebhookDelivery.objects.create(tenant=world.tenant, endpoint=webhook, seq=created.seq,
                                              event_type=created.type, body="{}", status="succeeded", attempts=1)
    return Objects(
        contract=contract, legal=tasks["legal"], finance=tasks["finance"],
        member=Membership.objects.get(tenant=world.tenant, user=world.viewer.user),
        agent=Membership.objects.get(tenant=world.tenant, user=world.agent.user),
        token=ApiToken.objects.get(user=world.agent.user),
        webhook=webhook, delivery=delivery,
    )


@dataclass
class World:
    acme: Any
    globex: Any
    acme_objects: Objects
    globex_objects: Objects
    dual: Member  # admin of both tenants: the tenant in the URL, not the caller, must scope every lookup


def _build(acme, globex) -> World:
    user, key = member_create(acme.tenant, Role.ADMIN, username="dual-admin")
    membership_set(tenant=globex.tenant, user=user, role=Role.ADMIN)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return World(acme=acme, globex=globex, acme_objects=_objects(acme), globex_objects=_objects(globex),
                 dual=Member(user=user, token=key, client=client))


@pytest.fixture(scope="module")
def _module_world(django_db_setup, django_db_blocker):
    """Both tenants, built and committed once for the ~300 calls of this module; each
    test runs in a transaction that is rolled back, so no call sees another's effects."""
    with committed_worlds(django_db_blocker, _build) as built:
        yield built


@pytest.fixture
def world(_module_world, db) -> World:
    return _module_world


def ids_of(name: str, objects: Objects) -> dict[str, Any]:
    by_kind = {"contract": objects.contract.pk, "task": objects.legal.pk, "member": objects.member.pk,
               "agent": objects.agent.pk, "token": objects.token.pk, "webhook": objects.webhook.pk,
               "delivery": objects.delivery.pk}
    return {kwarg: by_kind[kind] for kwarg, kind in OBJECT_KIND.get(name, {}).items()}


def missing_ids(name: str) -> dict[str, Any]:
    """Ids that exist nowhere, of the right type for each URL kwarg."""
    int_models = {"member": Membership, "agent": Membership, "token": ApiToken}
    ids = {}
    for kwarg, kind in OBJECT_KIND.get(name, {}).items():
        if kind in int_models:
            while int_models[kind].objects.filter(pk=(candidate := random.randint(10**6, 10**9))).exists():
                pass
            ids[kwarg] = candidate
        else:
            ids[kwarg] = uuid.uuid4()
    return ids


def url_for(name: str, slug: str | None = None, ids: dict[str, Any] | None = None) -> str:
    if name in TENANT_IN_BODY:
        return reverse(name)
    return reverse(name, kwargs={"tenant_slug": slug, **(ids or {})}) + QUERIES.get(name, "")


def call(client: APIClient, method: str, url: str, body: dict | None):
    if method in ("GET", "HEAD"):
        return getattr(client, method.lower())(url)
    return getattr(client, method.lower())(url, body, format="json")


def fingerprint() -> tuple:
    """Everything a request to these routes could change."""
    return (
        sorted(Contract.objects.values_list("pk", "status")),
        sorted(ReviewTask.objects.values_list("pk", "status", "decided_by_id", "claimed_by_id", "claim_expires_at")),
        sorted(Membership.objects.values_list("pk", "tenant_id", "user_id", "role", "finance_approver")),
        sorted(ReviewTaskUserPermission.objects.values_list("pk", "content_object_id", "user_id")),
        sorted(ReviewTaskGroupPermission.objects.values_list("pk", "content_object_id", "group_id")),
        sorted(ContractUserPermission.objects.values_list("pk", "content_object_id", "user_id")),
        sorted(ContractGroupPermission.objects.values_list("pk", "content_object_id", "group_id")),
        sorted(ApiToken.objects.values_list("pk", "user_id", "revoked_at")),
        AuditRecord.objects.count(),
        QueueEvent.objects.count(),
        IdempotencyRecord.objects.count(),
        WebsocketTicket.objects.count(),
        sorted(ReviewPolicy.objects.values_list("pk", "tenant_id", "kind", "due_after_seconds")),
        ReviewComment.objects.count(),
        sorted(WebhookEndpoint.objects.values_list("pk", "url", "is_active", "secret")),
        sorted(WebhookDelivery.objects.values_list("pk", "status", "attempts")),
        sorted(Tenant.objects.values_list("pk", "checkpoint_retention_days")),
    )


def caller_member(world: World, caller: str) -> Member | None:
    if caller == "anonymous":
        return None
    if caller == "other_tenant":
        return world.globex.admin  # the most privileged member of the other tenant
    return getattr(world.acme, caller)


# --- The matrix -------------------------------------------------------------------------

CASES = [
    pytest.param(name, method, caller, status, id=f"{name}-{method}-{caller}")
    for (name, method), row in MATRIX.items()
    for caller, status in row.items()
]


@pytest.mark.parametrize(("name", "method", "caller", "expected"), CASES)
def test_route_method_caller(world, name, method, caller, expected):
    acme, objects = world.acme, world.acme_objects
    member = caller_member(world, caller)
    if (name, method) in PREPARE:
        PREPARE[name, method](acme, objects, member.user if member else None)
    url = url_for(name, acme.slug, ids_of(name, objects))
    before = fingerprint()

    response = call(member.client if member else APIClient(), method, url, body_for(name, method, acme, objects))

    assert response.status_code == expected, f"{method} {url} as {caller}: {response.status_code} {response.content!r}"
    after = fingerprint()
    if expected == 401:
        assert response.json()["error"]["code"] == "not_authenticated"
    elif expected == 404:
        assert response.json() == NOT_FOUND_BODY
    elif expected == 403:
        assert response.json()["error"]["code"] == "forbidden"
    if expected >= 400 or method == "GET":
        assert after == before, f"{method} {url} as {caller} changed the database"
    else:
        assert after != before, f"{method} {url} as {caller} answered {expected} but changed nothing"


HEAD_CASES = [
    pytest.param(name, caller, status, id=f"{name}-HEAD-{caller}")
    for (name, method), row in MATRIX.items() if method == "GET"
    for caller, status in row.items()
]


@pytest.mark.parametrize(("name", "caller", "expected"), HEAD_CASES)
def test_head_is_answered_like_get(world, name, caller, expected):
    """Django serves HEAD with the GET handler: HEAD must be allowed to exactly whoever may GET."""
    url = url_for(name, world.acme.slug, ids_of(name, world.acme_objects))
    member = caller_member(world, caller)
    response = (member.client if member else APIClient()).head(url)
    assert response.status_code == expected, f"HEAD {url} as {caller}: {response.status_code}"


@pytest.mark.parametrize(("name", "method", "expected"), [
    pytest.param(*key, status, id=f"{key[0]}-{key[1]}") for key, status in PUBLIC.items()
])
def test_public_route_needs_no_token(db, name, method, expected):
    assert call(APIClient(), method, reverse(name), None).status_code == expected


def test_resume_is_refused_to_a_reviewer_outside_the_tasks_team(world):
    """The role allows resuming; the object permission (finance team) does not."""
    acme, finance = world.acme, world.acme_objects.finance
    url = url_for("review-resume", acme.slug, {"task_id": finance.pk})
    before = fingerprint()
    refused = call(acme.reviewer.client, "POST", url, {"decision": "approve"})
    assert refused.status_code == 403, refused.content
    assert refused.json()["error"]["code"] == "forbidden"
    assert fingerprint() == before

    assert call(acme.reviewer2.client, "POST", url, {"decision": "approve"}).status_code == 202
    decided = ReviewTask.objects.get(pk=finance.pk)  # the module's instance stays as built
    assert (decided.status, decided.decided_by_id) == ("resolved", acme.reviewer2.user.pk)


# --- Another tenant's objects: exactly a missing object ---------------------------------

OBJECT_CASES = [
    pytest.param(name, method, id=f"{name}-{method}") for (name, method) in MATRIX if name in OBJECT_KIND
]


@pytest.mark.parametrize(("name", "method"), OBJECT_CASES)
def test_other_tenants_object_is_exactly_a_missing_object(world, name, method):
    acme, globex = world.acme, world.globex
    acme_ids, globex_ids = ids_of(name, world.acme_objects), ids_of(name, world.globex_objects)
    acme_body = body_for(name, method, acme, world.acme_objects)
    globex_body = body_for(name, method, globex, world.globex_objects)
    if (name, method) in PREPARE:  # e.g. a claim to release, on both sides
        PREPARE[name, method](acme, world.acme_objects, acme.admin.user)
        PREPARE[name, method](globex, world.globex_objects, globex.admin.user)

    # The reference: ids that exist nowhere, asked by a caller allowed to use the route.
    missing = call(acme.admin.client, method, url_for(name, acme.slug, missing_ids(name)), acme_body)
    assert missing.status_code == 404, missing.content
    assert missing.json() == NOT_FOUND_BODY

    variants = {
        "acme admin, acme URL, globex's ids": (acme.admin.client, url_for(name, acme.slug, globex_ids), acme_body),
        "acme admin, globex URL, globex's ids": (
            acme.admin.client, url_for(name, globex.slug, globex_ids), globex_body),
        "globex admin, globex URL, acme's ids": (
            globex.admin.client, url_for(name, globex.slug, acme_ids), globex_body),
        "globex admin, acme URL, acme's ids": (globex.admin.client, url_for(name, acme.slug, acme_ids), acme_body),
        "globex admin, globex URL, random ids": (
            globex.admin.client, url_for(name, globex.slug, missing_ids(name)), globex_body),
        "admin of both, globex URL, acme's ids": (world.dual.client, url_for(name, globex.slug, acme_ids), globex_body),
        "admin of both, acme URL, globex's ids": (world.dual.client, url_for(name, acme.slug, globex_ids), acme_body),
    }
    if len(acme_ids) > 1:  # one id of each tenant in the same URL
        first = next(iter(acme_ids))
        mixed = {**globex_ids, first: acme_ids[first]}
        variants["acme admin, acme URL, acme's first id and globex's others"] = (
            acme.admin.client, url_for(name, acme.slug, mixed), acme_body)
    before = fingerprint()
    failures = []
    for label, (client, url, body) in variants.items():
        response = call(client, method, url, body)
        if response.status_code != 404 or response.content != missing.content:
            failures.append(f"{label}: {method} {url} -> {response.status_code} {response.content!r}")
    assert not failures, "\n".join(failures)
    assert fingerprint() == before, "a cross-tenant request changed the database"


def test_batch_resume_of_another_tenants_task_is_exactly_a_missing_task(world):
    """The batch names its tasks in the body, so the URL-level checks above do not cover it."""
    acme = world.acme
    url = url_for("review-batch-resume", acme.slug)
    globex_task = world.globex_objects.legal.pk
    before = fingerprint()
    foreign = call(acme.admin.client, "POST", url, {"items": [{"id": str(globex_task), "decision": "approve"}]})
    random_id = uuid.uuid4()
    missing = call(acme.admin.client, "POST", url, {"items": [{"id": str(random_id), "decision": "approve"}]})
    assert (foreign.status_code, missing.status_code) == (200, 200)
    assert foreign.json()["results"] == [{"id": str(globex_task), "outcome": "not_found"}]
    assert missing.json()["results"] == [{"id": str(random_id), "outcome": "not_found"}]
    assert fingerprint() == before


def test_ws_ticket_for_another_tenant_is_exactly_a_ticket_for_a_missing_tenant(world):
    acme = world.acme
    before = fingerprint()
    missing = call(acme.admin.client, "POST", url_for("ws-ticket"), {"tenant": "no-such-tenant"})
    foreign = call(acme.admin.client, "POST", url_for("ws-ticket"), {"tenant": world.globex.slug})
    assert (missing.status_code, foreign.status_code) == (404, 404)
    assert foreign.content == missing.content
    assert foreign.json() == NOT_FOUND_BODY
    assert fingerprint() == before


def test_unknown_tenant_is_exactly_a_tenant_of_which_one_is_not_a_member(world):
    acme = world.acme
    unknown = acme.admin.client.get(url_for("contract-list", "no-such-tenant"))
    foreign = acme.admin.client.get(url_for("contract-list", world.globex.slug))
    assert (unknown.status_code, foreign.status_code) == (404, 404)
    assert unknown.content == foreign.content
    assert foreign.json() == NOT_FOUND_BODY
