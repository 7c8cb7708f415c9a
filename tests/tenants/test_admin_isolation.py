"""The Django admin is a second API and keeps tenants apart like the first: changelists,
change forms, history, delete pages, list filters, form choices, actions and the
autocomplete endpoint show an acme member nothing of globex. A superuser sees both.
A reviewer's decision in the admin goes through the same service as the API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client, TestCase

from contracts.models import Contract, ContractGroupPermission, ContractUserPermission
from contracts.services import contract_submit
from reviews.models import (
    ReviewComment,
    ReviewPolicy,
    ReviewTask,
    ReviewTaskGroupPermission,
    ReviewTaskUserPermission,
    WebhookDelivery,
    WebhookEndpoint,
)
from reviews.services import resume_permission_set, review_comment_add, review_policies_set
from tenants.models import ApiToken, AuditRecord, Membership, Tenant, TenantGroup, TenantOwned
from tenants.services import tenant_group_get
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT, HIGH_RISK_TEXT, UserFactory

pytestmark = pytest.mark.django_db

SCOPED_APPS = ("tenants", "contracts", "reviews")


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Side:
    world: object
    contract: Contract
    legal: ReviewTask
    finance: ReviewTask


def _side(world) -> Side:
    """A contract waiting for legal and finance review, one grant of every kind, and
    the audit records those leave: at least one object of every tenant-owned admin."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        contract = contract_submit(tenant=world.tenant, submitted_by=world.agent.user,
                                   title=f"{world.slug.upper()}-CONFIDENTIAL supply deal",
                                   text=HIGH_RISK_LARGE_PAYMENT_TEXT)
    tasks = {t.kind: t for t in ReviewTask.objects.filter(contract=contract)}
    admin_user = world.admin.user
    resume_permission_set(tenant=world.tenant, target=tasks["finance"], grant=True, actor=admin_user, via="api",
                          user=world.reviewer.user)
    resume_permission_set(tenant=world.tenant, target=contract, grant=True, actor=admin_user, via="api",
                          user=world.reviewer.user)
    resume_permission_set(tenant=world.tenant, target=contract, grant=True, actor=admin_user, via="api",
                          group=tenant_group_get(tenant=world.tenant, team="senior"))
    # The queue's time rules, a comment, a webhook and one of its deliveries.
    review_policies_set(tenant=world.tenant, changes={"legal": {"due_after_seconds": 7200}}, actor=admin_user, via="api")
    review_comment_add(tenant=world.tenant, task_id=tasks["legal"].pk, user=world.reviewer.user,
                       body=f"{world.slug.upper()}-CONFIDENTIAL note", via="api")
    webhook = WebhookEndpoint.objects.create(tenant=world.tenant, url=f"https://hooks.example.com/{world.slug}",
                                             event_types=["review.created"], secret="whsec_" + "A" * 44)
    WebhookDelivery.objects.create(tenant=world.tenant, endpoint=webhook, seq=1, event_type="review.created", body="{}",
                                   status="failed", attempts=3, last_error=f"HTTP 500 from {world.slug}")
    return Side(world=world, contract=contract, legal=tasks["legal"], finance=tasks["finance"])


@pytest.fixture
def sides(acme, globex) -> tuple[Side, Side]:
    for world in (acme, globex):
        for member in (world.admin, world.reviewer, world.viewer):
            member.user.is_staff = True  # the admin site needs it; tenant roles decide the rest
            member.user.save(update_fields=["is_staff"])
    return _side(acme), _side(globex)


def login(member_or_user) -> Client:
    client = Client()
    client.force_login(getattr(member_or_user, "user", member_or_user))
    return client


@pytest.fixture
def superuser(db):
    user = UserFactory(username="root", is_staff=True, is_superuser=True)
    user.save()
    return user


def globex_pks(globex) -> dict[type, set[str]]:
    """Every object that belongs to globex, by model."""
    users = set(Membership.objects.filter(tenant=globex.tenant).values_list("user_id", flat=True))
    pks: dict[type, set[str]] = {
        model: {str(pk) for pk in model.objects.filter(tenant=globex.tenant).values_list("pk", flat=True)}
        for model in apps.get_models() if issubclass(model, TenantOwned)
    }
    pks[Tenant] = {str(globex.tenant.pk)}
    pks[get_user_model()] = {str(pk) for pk in users}
    pks[Group] = {str(pk) for pk in TenantGroup.objects.filter(tenant=globex.tenant).values_list("group_id", flat=True)}
    pks[ApiToken] = {str(pk) for pk in ApiToken.objects.filter(user_id__in=users).values_list("pk", flat=True)}
    return pks


def leaks(html: str, globex) -> list[str]:
    """Names and ids of globex that appear in a page."""
    found = []
    for marker in ("globex", str(globex.tenant.pk)):
        if marker in html.lower():
            found.append(marker)
    for model in (Contract, ReviewTask):
        found += [pk for pk in globex_pks(globex)[model] if pk in html]
    return found


def scoped_admins() -> dict[type, admin.ModelAdmin]:
    return {model: model_admin for model, model_admin in admin.site._registry.items()
            if model._meta.app_label in SCOPED_APPS}


def tenant_choices(changelist_response) -> list[tuple[str, str]]:
    """What the changelist's tenant filter offers."""
    [tenant_filter] = [spec for spec in changelist_response.context["cl"].filter_specs
                       if getattr(spec, "parameter_name", "") == "tenant"]
    return list(tenant_filter.lookup_choices)


def admin_url(model: type, view: str = "changelist", pk=None) -> str:
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    return base if view == "changelist" else f"{base}{pk}/{view}/" if pk is not None else f"{base}{view}/"


# What each acme role may open: every other scoped changelist is a 403.
VISIBLE = {
    "admin": {Tenant, Membership, AuditRecord, TenantGroup, Contract, ReviewTask, ReviewTaskUserPermission,
              ReviewTaskGroupPermission, ContractUserPermission, ContractGroupPermission, ReviewPolicy, ReviewComment,
              WebhookEndpoint, WebhookDelivery},
    "reviewer": {Contract, ReviewTask, ReviewComment},
    "viewer": {Contract, ReviewTask, ReviewComment},
}


# --- Changelists -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "reviewer", "viewer"])
def test_changelists_show_no_globex_object(sides, role):
    acme, globex = sides[0].world, sides[1].world
    client = login(getattr(acme, role))
    foreign = globex_pks(globex)
    seen_acme = set()
    for model in scoped_admins():
        response = client.get(admin_url(model))
        if model not in VISIBLE[role]:
            assert response.status_code == 403, f"{model.__name__}: {response.status_code}"
            continue
        assert response.status_code == 200, f"{model.__name__}: {response.status_code}"
        shown = {str(obj.pk) for obj in response.context["cl"].result_list}
        assert not shown & foreign.get(model, set()), f"{model.__name__} lists globex objects"
        found = leaks(response.content.decode(), globex)
        assert not found, f"{model.__name__}: {found}"
        seen_acme |= {(model, pk) for pk in shown}

        # Nor can the tenant filter be pointed at globex (the page echoes the id typed, nothing else).
        pointed = client.get(admin_url(model), {"tenant": str(globex.tenant.pk)})
        if pointed.status_code == 302:  # a model without the tenant filter: ?e=1, invalid lookup
            assert pointed["Location"].endswith("?e=1"), model.__name__
            continue
        assert pointed.status_code == 200
        assert not pointed.context["cl"].result_list, f"{model.__name__}?tenant=globex lists objects"
        assert "globex" not in pointed.content.decode().lower()
    # Not vacuous: the pages did list acme's own objects.
    assert (ReviewTask, str(sides[0].legal.pk)) in seen_acme
    assert (Contract, str(sides[0].contract.pk)) in seen_acme


@pytest.mark.parametrize("role", ["admin", "reviewer"])
def test_the_tenant_filter_offers_only_the_users_tenants(sides, role):
    acme = sides[0].world
    response = login(getattr(acme, role)).get(admin_url(ReviewTask))
    assert tenant_choices(response) == [(str(acme.tenant.pk), "acme")]


def test_the_superuser_sees_both_tenants(sides, superuser):
    acme_side, globex_side = sides
    client = login(superuser)
    tasks = client.get(admin_url(ReviewTask))
    assert {str(t.pk) for t in tasks.context["cl"].result_list} >= {str(acme_side.legal.pk), str(globex_side.legal.pk)}
    html = tasks.content.decode()
    assert acme_side.contract.title in html and globex_side.contract.title in html
    assert {label for _, label in tenant_choices(tasks)} >= {"acme", "globex"}
    members = client.get(admin_url(Membership))
    both = {acme_side.world.tenant.pk, globex_side.world.tenant.pk}
    assert {m.tenant_id for m in members.context["cl"].result_list} >= both
    found = client.get("/admin/autocomplete/", {"app_label": "reviews", "model_name": "reviewtaskuserpermission",
                                                "field_name": "content_object"}).json()["results"]
    assert {str(acme_side.legal.pk), str(globex_side.legal.pk)} <= {r["id"] for r in found}


# --- Change, history and delete pages of globex objects ------------------------------------


def one_globex_object_per_model(globex) -> dict[type, object]:
    objects = {}
    for model in scoped_admins():
        if model is Tenant:
            objects[model] = globex.tenant
        elif model is ApiToken:
            objects[model] = ApiToken.objects.filter(user=globex.admin.user).first()
        else:
            objects[model] = model.objects.filter(tenant=globex.tenant).first()
    missing = [m.__name__ for m, obj in objects.items() if obj is None]
    assert not missing, f"the fixture made no globex object for {missing}"
    return objects


@pytest.mark.parametrize("role", ["admin", "reviewer"])
@pytest.mark.parametrize("view", ["change", "history", "delete"])
def test_pages_of_globex_objects_are_never_shown(sides, role, view):
    acme, globex = sides[0].world, sides[1].world
    client = login(getattr(acme, role))
    for model, obj in one_globex_object_per_model(globex).items():
        response = client.get(admin_url(model, view, obj.pk))
        assert response.status_code in (302, 403, 404), f"{model.__name__} {view}: {response.status_code}"
        final = client.get(response["Location"]) if response.status_code == 302 else response
        assert "globex" not in final.content.decode().lower(), f"{model.__name__} {view} shows globex"
        if response.status_code == 302:
            # Exactly as for an object that does not exist.
            pk_type = uuid.uuid4() if isinstance(obj.pk, uuid.UUID) else 2_000_000_000
            absent = client.get(admin_url(model, view, pk_type))
            assert absent.status_code == 302 and absent["Location"] == response["Location"], model.__name__
        # A POST to it changes nothing either.
        before = model.objects.filter(pk=obj.pk).values().first()
        client.post(admin_url(model, view, obj.pk), {"post": "yes", "decision": "approve", "role": "viewer"})
        assert model.objects.filter(pk=obj.pk).values().first() == before, f"{model.__name__} {view} POST changed it"


# --- Forms and their choices ---------------------------------------------------------------


def test_the_membership_add_form_offers_only_acme(sides):
    acme, globex = sides[0].world, sides[1].world
    client = login(acme.admin)
    form = client.get(admin_url(Membership, "add")).context["adminform"].form
    assert list(form.fields["tenant"].queryset) == [acme.tenant]

    response = client.post(admin_url(Membership, "add"),
                           {"tenant": str(globex.tenant.pk), "username": "intruder", "role": "admin"})
    assert response.status_code == 200
    assert "tenant" in response.context["adminform"].form.errors
    assert not Membership.objects.filter(tenant=globex.tenant, user__username="intruder").exists()
    assert not get_user_model().objects.filter(username="intruder").exists()


GRANT_ADMINS = {
    ReviewTaskUserPermission: ("user", ReviewTask),
    ReviewTaskGroupPermission: ("group", ReviewTask),
    ContractUserPermission: ("user", Contract),
    ContractGroupPermission: ("group", Contract),
}


@pytest.mark.parametrize("grant_model", GRANT_ADMINS, ids=lambda m: m.__name__)
def test_the_grant_add_form_offers_no_globex_object_or_holder(sides, grant_model):
    acme_side, globex_side = sides
    acme, globex = acme_side.world, globex_side.world
    holder_field, target_model = GRANT_ADMINS[grant_model]
    foreign = globex_pks(globex)
    client = login(acme.admin)
    url = admin_url(grant_model, "add")

    form = client.get(url).context["adminform"].form
    targets = {str(pk) for pk in form.fields["content_object"].queryset.values_list("pk", flat=True)}
    holders = {str(pk) for pk in form.fields[holder_field].queryset.values_list("pk", flat=True)}
    assert targets and not targets & foreign[target_model]
    holder_model = form.fields[holder_field].queryset.model
    assert holders and not holders & foreign[holder_model]

    acme_target = acme_side.finance if target_model is ReviewTask else acme_side.contract
    globex_target = globex_side.finance if target_model is ReviewTask else globex_side.contract
    def holder_of(world):
        return world.senior.user if holder_field == "user" else tenant_group_get(tenant=world.tenant, team="senior")

    acme_holder, globex_holder = holder_of(acme), holder_of(globex)
    rows = grant_model.objects.count()
    for target, holder in ((globex_target, acme_holder), (acme_target, globex_holder)):
        response = client.post(url, {"content_object": str(target.pk), holder_field: str(holder.pk)})
        assert response.status_code == 200  # the form, with its error
        assert response.context["adminform"].form.errors
    assert grant_model.objects.count() == rows


# --- Actions posted with globex ids ---------------------------------------------------------


def post_action(client: Client, model: type, action: str, pks: list, **extra):
    """An action as its confirmation page posts it (`post=yes`): the step that acts."""
    data = {"action": action, "select_across": "0", "_selected_action": [str(pk) for pk in pks], "post": "yes",
            **extra}
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(admin_url(model), data)


def test_actions_posted_with_globex_ids_change_nothing(sides):
    acme_side, globex_side = sides
    acme, globex = acme_side.world, globex_side.world
    client = login(acme.admin)
    audits = AuditRecord.objects.filter(tenant=globex.tenant).count()

    post_action(client, ReviewTask, "approve_selected", [globex_side.legal.pk, globex_side.finance.pk])
    post_action(client, ReviewTask, "reject_selected", [globex_side.legal.pk])
    memberships = list(Membership.objects.filter(tenant=globex.tenant).values_list("pk", flat=True))
    post_action(client, Membership, "delete_selected", memberships, post="yes")
    for grant_model in GRANT_ADMINS:
        grants = list(grant_model.objects.filter(tenant=globex.tenant).values_list("pk", flat=True))
        post_action(client, grant_model, "delete_selected", grants, post="yes")
    theirs = {model: list(model.objects.filter(tenant=globex.tenant).values_list("pk", flat=True))
              for model in (ReviewPolicy, WebhookEndpoint, WebhookDelivery)}
    secrets = list(WebhookEndpoint.objects.filter(tenant=globex.tenant).values_list("secret", flat=True))
    post_action(client, ReviewPolicy, "delete_selected", theirs[ReviewPolicy], post="yes")
    post_action(client, WebhookEndpoint, "rotate_secret", theirs[WebhookEndpoint])
    post_action(client, WebhookEndpoint, "delete_selected", theirs[WebhookEndpoint], post="yes")
    post_action(client, WebhookDelivery, "send_again", theirs[WebhookDelivery])
    for model, pks in theirs.items():
        assert list(model.objects.filter(tenant=globex.tenant).values_list("pk", flat=True)) == pks, model.__name__
    assert list(WebhookEndpoint.objects.filter(tenant=globex.tenant).values_list("secret", flat=True)) == secrets
    assert set(WebhookDelivery.objects.filter(tenant=globex.tenant).values_list("status", flat=True)) == {"failed"}

    assert set(ReviewTask.objects.filter(tenant=globex.tenant).values_list("status", flat=True)) == {"pending"}
    assert list(Membership.objects.filter(tenant=globex.tenant).values_list("pk", flat=True)) == memberships
    for grant_model in GRANT_ADMINS:
        assert grant_model.objects.filter(tenant=globex.tenant).exists(), grant_model.__name__
    assert AuditRecord.objects.filter(tenant=globex.tenant).count() == audits

    # Control: the same action on acme's own task does act.
    post_action(client, ReviewTask, "approve_selected", [acme_side.legal.pk])
    acme_side.legal.refresh_from_db()
    assert acme_side.legal.status == "resolved"


# --- Autocomplete ----------------------------------------------------------------------------


def autocomplete_sources() -> list[tuple[str, str, str]]:
    """Every (app_label, model_name, field_name) the endpoint accepts: each relation
    field of each installed model whose target has a ModelAdmin."""
    sources = []
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if field.is_relation and field.concrete and field.related_model in admin.site._registry:
                sources.append((model._meta.app_label, model._meta.model_name, field.name))
    return sources


@pytest.mark.parametrize("role", ["admin", "reviewer"])
def test_autocomplete_returns_no_globex_object(sides, role):
    acme, globex = sides[0].world, sides[1].world
    client = login(getattr(acme, role))
    foreign = globex_pks(globex)
    answered = 0
    for app_label, model_name, field_name in autocomplete_sources():
        remote = apps.get_model(app_label, model_name)._meta.get_field(field_name).related_model
        for term in ("", "globex", "GLOBEX-CONFIDENTIAL"):
            response = client.get("/admin/autocomplete/", {"app_label": app_label, "model_name": model_name,
                                                           "field_name": field_name, "term": term})
            label = f"{app_label}.{model_name}.{field_name} term={term!r}"
            assert response.status_code in (200, 403, 404), f"{label}: {response.status_code}"
            if response.status_code != 200:
                continue
            answered += 1
            results = response.json()["results"]
            assert not {r["id"] for r in results} & foreign.get(remote, set()), f"{label} returns globex objects"
            assert not any("globex" in r["text"].lower() or str(globex.tenant.pk) in r["text"] for r in results), label
    assert answered  # some sources do answer this role

    # Not vacuous: acme's own tasks come back.
    found = client.get("/admin/autocomplete/", {"app_label": "reviews", "model_name": "reviewtaskuserpermission",
                                                "field_name": "content_object"}).json()["results"]
    assert str(sides[0].legal.pk) in {r["id"] for r in found}


# --- Deciding in the admin --------------------------------------------------------------------


def test_a_reviewer_amends_through_the_admin_change_form_like_through_the_api(acme):
    acme.reviewer.user.is_staff = True
    acme.reviewer.user.save(update_fields=["is_staff"])
    with TestCase.captureOnCommitCallbacks(execute=True):
        contract = contract_submit(tenant=acme.tenant, submitted_by=acme.agent.user, title="MSA", text=HIGH_RISK_TEXT)
    legal = ReviewTask.objects.get(contract=contract)
    client = login(acme.reviewer)
    form = client.get(admin_url(ReviewTask, "change", legal.pk))
    assert 'name="decision"' in form.content.decode()

    amendments = ["Liability capped at fees paid in the prior 12 months.", "Termination needs 90 days notice."]
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(admin_url(ReviewTask, "change", legal.pk), {
            "decision": "amend", "amendments": [*amendments, "", "  "], "comment": "see notes"})

    assert response.status_code == 302
    contract.refresh_from_db()
    legal.refresh_from_db()
    assert contract.status == "amended"
    assert contract.amendments == amendments
    assert "1. Liability capped" in contract.amended_text
    assert (legal.status, legal.decided_by_id) == ("resolved", acme.reviewer.user.pk)
    assert legal.decision["decision"] == "amend"
    [record] = AuditRecord.objects.filter(tenant=acme.tenant, action="review.resolved")
    assert (record.actor_username, record.interface, record.target_id) == ("acme-reviewer", "admin", str(legal.pk))
    # The API reports it like any other decision.
    detail = acme.viewer.client.get(acme.url(f"contracts/{contract.pk}/")).json()
    assert [(h["kind"], h["decision"], h["decided_by_username"]) for h in detail["decision_history"]] == [
        ("legal", "amend", "acme-reviewer")
    ]


def test_a_person_in_two_tenants_sees_each_as_far_as_their_role_there_allows(sides):
    """Admin at acme, viewer at globex: globex's review queue yes, its members and grants no."""
    acme_side, globex_side = sides
    acme, globex = acme_side.world, globex_side.world
    Membership.objects.create(tenant=globex.tenant, user=acme.admin.user, role="viewer")
    client = login(acme.admin)

    tasks = client.get(admin_url(ReviewTask), {"show": "pending"})
    assert {label for _, label in tenant_choices(tasks)} == {"acme", "globex"}
    assert str(globex_side.legal.pk) in {str(t.pk) for t in tasks.context["cl"].result_list}

    members = client.get(admin_url(Membership))
    assert {m.tenant_id for m in members.context["cl"].result_list} == {acme.tenant.pk}
    assert tenant_choices(members) == [(str(acme.tenant.pk), "acme")]
    form = client.get(admin_url(ReviewTaskUserPermission, "add")).context["adminform"].form
    offered = set(form.fields["content_object"].queryset.values_list("pk", flat=True))
    assert not offered & {globex_side.legal.pk, globex_side.finance.pk}
    # As a globex viewer they may look at globex's tasks but not decide them.
    page = client.get(admin_url(ReviewTask, "change", globex_side.legal.pk))
    assert page.status_code == 200 and 'name="decision"' not in page.content.decode()
    post_action(client, ReviewTask, "approve_selected", [globex_side.legal.pk])
    globex_side.legal.refresh_from_db()
    assert globex_side.legal.status == "pending"
