"""Review policies per tenant and kind: the defaults, changes over the API and the admin,
combinations refused with a 400 naming the field, and the times a new task gets from
the policy in force (the clock injected through `now=`)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.test import Client, TestCase

from contracts.graph.runner import PendingInterrupt
from contracts.models import Contract
from reviews.models import ReviewPolicy, ReviewTask
from reviews.services import review_tasks_sync
from tenants.models import AuditRecord
from tests.api_flow import pending, submit
from tests.factories import HIGH_RISK_TEXT

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

T0 = datetime(2031, 3, 4, 9, 0, tzinfo=dt_timezone.utc)

SHORT = {
    "due_after_seconds": 3600,
    "remind_before_due_seconds": 600,
    "escalate_after_seconds": 1800,
    "escalation_team": "senior",
    "escalation_keeps_grants": False,
    "expire_after_seconds": 7200,
    "expiry_action": "reject",
    "expiry_reason": "Not reviewed within two hours: rejected by policy.",
}


def policies(member, world) -> dict[str, dict]:
    response = member.client.get(world.url("policies/"))
    assert response.status_code == 200, response.content
    return {row["kind"]: row for row in response.json()["results"]}


def patch(member, world, body):
    return member.client.patch(world.url("policies/"), body, format="json")


def assert_invalid(response, field: str) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"], error
    assert error["message"].startswith(f"{field}:"), error


def contract_of(world, title: str = "MSA") -> Contract:
    """A contract row without a run: review_tasks_sync needs nothing more."""
    import uuid

    contract_id = uuid.uuid4()
    return Contract.objects.create(id=contract_id, tenant=world.tenant, title=title, text=HIGH_RISK_TEXT,
                                   thread_id=Contract.thread_id_for(world.tenant.id, contract_id))


def interrupt(kind: str, risk: float = 0.8) -> PendingInterrupt:
    return PendingInterrupt(id=f"{kind:x<32}"[:32], kind=kind, payload={"kind": kind, "risk_score": risk}, response_schema=None)


# --- Defaults ---------------------------------------------------------------------------


def test_a_tenant_that_set_nothing_has_the_defaults(acme):
    shown = policies(acme.admin, acme)
    assert set(shown) == {"legal", "finance", "signoff"}
    for row in shown.values():
        assert row["is_default"] is True
        # Today's 24 h due (the tenant's review_due_hours), a reminder 2 h before, and
        # nothing that decides or re-routes on its own.
        assert row["due_after_seconds"] == 24 * 3600
        assert row["remind_before_due_seconds"] == 2 * 3600
        assert (row["escalate_after_seconds"], row["expire_after_seconds"], row["expiry_action"]) == (None, None, "nothing")


def test_default_times_follow_the_tenants_due_hours(acme):
    acme.tenant.review_due_hours = 48
    acme.tenant.save()
    contract = contract_of(acme)
    [task] = review_tasks_sync(contract=contract, pending=[interrupt("legal", 0.6)], now=T0)
    assert task.due_at == T0 + timedelta(hours=48)
    assert task.remind_at == T0 + timedelta(hours=44)
    assert (task.escalate_at, task.expire_at) == (None, None)
    assert task.priority == 30  # half of the risk: 0.6 * 50
    assert task.policy["is_default"] is True


# --- Changes ------------------------------------------------------------------------------


def test_an_admin_sets_a_policy_and_new_tasks_follow_it(acme):
    response = patch(acme.admin, acme, {"legal": SHORT})
    assert response.status_code == 200, response.content
    shown = policies(acme.admin, acme)
    assert shown["legal"] == {"kind": "legal", "is_default": False, **SHORT}
    assert shown["finance"]["is_default"] is True

    contract = contract_of(acme)
    tasks = {t.kind: t for t in review_tasks_sync(contract=contract, pending=[interrupt("legal"), interrupt("finance")], now=T0)}
    legal = tasks["legal"]
    assert legal.due_at == T0 + timedelta(seconds=3600)
    assert legal.remind_at == T0 + timedelta(seconds=3000)
    assert legal.escalate_at == T0 + timedelta(seconds=1800)
    assert legal.expire_at == T0 + timedelta(seconds=7200)
    assert legal.policy["expiry_action"] == "reject" and legal.policy["escalation_team"] == "senior"
    assert legal.policy["expiry_reason"] == SHORT["expiry_reason"]
    assert tasks["finance"].due_at == T0 + timedelta(hours=24)  # still the default

    record = AuditRecord.objects.get(tenant=acme.tenant, action="policy.changed")
    assert record.actor == acme.admin.user and record.data["kind"] == "legal" and record.data["due_after_seconds"] == 3600


def test_a_submitted_contract_gets_its_times_from_the_policy(acme):
    patch(acme.admin, acme, {"legal": SHORT})
    task = pending(submit(acme, HIGH_RISK_TEXT))["legal"]
    # All four times come from one clock reading, so their distances are the policy's.
    assert task.due_at - task.remind_at == timedelta(seconds=600)
    assert task.expire_at - task.escalate_at == timedelta(seconds=7200 - 1800)
    assert task.expire_at - task.due_at == timedelta(seconds=7200 - 3600)
    detail = acme.reviewer.client.get(acme.url(f"reviews/{task.pk}/")).json()
    assert detail["policy"]["due_after_seconds"] == 3600
    assert detail["due_status"] == "on_time" and 0 < detail["due_in_seconds"] <= 3600


def test_a_task_keeps_the_policy_it_was_created_under(acme):
    patch(acme.admin, acme, {"legal": SHORT})
    [task] = review_tasks_sync(contract=contract_of(acme), pending=[interrupt("legal")], now=T0)
    patch(acme.admin, acme, {"legal": {"due_after_seconds": 99_000, "expire_after_seconds": 99_000}})
    task.refresh_from_db()
    assert task.due_at == T0 + timedelta(seconds=3600) and task.policy["expire_after_seconds"] == 7200


def test_the_default_reminder_follows_a_new_due_time(acme):
    assert patch(acme.admin, acme, {"finance": {"due_after_seconds": 7200}}).status_code == 200
    assert policies(acme.admin, acme)["finance"]["remind_before_due_seconds"] == 600  # a twelfth, as by default
    assert patch(acme.admin, acme, {"signoff": {"due_after_seconds": 600}}).status_code == 200
    assert policies(acme.admin, acme)["signoff"]["remind_before_due_seconds"] is None  # a twelfth is under a minute


def test_fields_not_given_keep_their_values_and_null_resets_a_kind(acme):
    patch(acme.admin, acme, {"legal": SHORT})
    assert patch(acme.admin, acme, {"legal": {"remind_before_due_seconds": None}}).status_code == 200
    legal = policies(acme.admin, acme)["legal"]
    assert legal["remind_before_due_seconds"] is None and legal["expire_after_seconds"] == 7200

    assert patch(acme.admin, acme, {"legal": None}).status_code == 200
    assert policies(acme.admin, acme)["legal"]["is_default"] is True
    assert not ReviewPolicy.objects.filter(tenant=acme.tenant).exists()
    assert AuditRecord.objects.filter(tenant=acme.tenant, action="policy.reset").count() == 1


# --- Combinations refused --------------------------------------------------------------


@pytest.mark.parametrize(("change", "field"), [
    ({"remind_before_due_seconds": 3600}, "legal.remind_before_due_seconds"),  # not before due
    ({"expire_after_seconds": 1800, "escalate_after_seconds": None}, "legal.expire_after_seconds"),  # before due
    ({"escalate_after_seconds": 7200}, "legal.escalate_after_seconds"),  # not before expiry
    ({"expiry_action": "approve"}, "legal.expiry_action"),  # an expiry never approves
    ({"expire_after_seconds": None, "escalate_after_seconds": None}, "legal.expiry_action"),  # reject needs an expiry
    ({"due_after_seconds": 59}, "legal.due_after_seconds"),
    ({"due_after_seconds": "soon"}, "legal.due_after_seconds"),
    ({"escalation_team": "everyone"}, "legal.escalation_team"),
    ({"expiry_reason": "x" * 501}, "legal.expiry_reason"),
    ({"approve_on_expiry": True}, "legal.approve_on_expiry"),
])
def test_an_invalid_policy_is_a_400_naming_the_field_and_changes_nothing(acme, change, field):
    patch(acme.admin, acme, {"legal": SHORT})
    before = policies(acme.admin, acme)
    # A valid change of another kind in the same request is not applied either.
    response = patch(acme.admin, acme, {"finance": {"due_after_seconds": 7200}, "legal": change})
    assert_invalid(response, field)
    assert policies(acme.admin, acme) == before


def test_an_unknown_kind_is_a_400_naming_it(acme):
    assert_invalid(patch(acme.admin, acme, {"procurement": {"due_after_seconds": 3600}}), "procurement")


# --- Who may ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["reviewer", "senior", "viewer", "agent"])
def test_only_tenant_admins_read_or_change_policies(acme, role):
    member = getattr(acme, role)
    assert member.client.get(acme.url("policies/")).status_code == 403
    response = patch(member, acme, {"legal": {"due_after_seconds": 3600}})
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert not ReviewPolicy.objects.exists()


def test_another_tenants_policies_are_a_404_and_stay_as_they_were(acme, globex):
    patch(globex.admin, globex, {"legal": SHORT})
    for response in (acme.admin.client.get(globex.url("policies/")),
                     patch(acme.admin, globex, {"legal": {"due_after_seconds": 600}})):
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}
    assert policies(globex.admin, globex)["legal"]["due_after_seconds"] == 3600
    assert policies(acme.admin, acme)["legal"]["is_default"] is True


# --- The admin ----------------------------------------------------------------------------


def _staff(member) -> Client:
    member.user.is_staff = True
    member.user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(member.user)
    return client


def _form(tenant, **values) -> dict:
    data = {"tenant": str(tenant.pk), "kind": "legal", "escalation_team": "", "expiry_action": "nothing",
            "expiry_reason": "", "remind_before_due_seconds": "", "escalate_after_seconds": "", "expire_after_seconds": ""}
    data.update({k: ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in values.items()})
    if values.get("escalation_keeps_grants") is False:
        data.pop("escalation_keeps_grants")  # an unchecked box is absent from the form
    elif "escalation_keeps_grants" in data:
        data["escalation_keeps_grants"] = "on"
    return data


def test_the_admin_form_refuses_what_the_api_refuses_and_saves_through_the_service(acme, globex):
    client = _staff(acme.admin)
    url = "/admin/reviews/reviewpolicy/add/"
    refused = client.post(url, _form(acme.tenant, **{**SHORT, "remind_before_due_seconds": 3600}))
    assert refused.status_code == 200  # the form again, with the error on the field
    assert "remind_before_due_seconds" in refused.context["adminform"].form.errors
    assert not ReviewPolicy.objects.exists()

    # globex is not among the tenants the form offers.
    assert list(client.get(url).context["adminform"].form.fields["tenant"].queryset) == [acme.tenant]

    saved = client.post(url, _form(acme.tenant, **SHORT))
    assert saved.status_code == 302, saved.context["adminform"].form.errors if saved.context else saved
    policy = ReviewPolicy.objects.get(tenant=acme.tenant, kind="legal")
    assert (policy.due_after_seconds, policy.expiry_action, policy.escalation_keeps_grants) == (3600, "reject", False)
    assert AuditRecord.objects.filter(tenant=acme.tenant, action="policy.changed", interface="admin").exists()


def test_a_save_the_service_refuses_shows_only_the_refusal(acme):
    # A superuser who is no member of the tenant passes the admin's scoping, but the
    # policy service takes tenant admins only.
    root = get_user_model().objects.create_superuser("root-policy", "root@example.com", "pw")
    client = Client()
    client.force_login(root)
    url = "/admin/reviews/reviewpolicy/add/"
    response = client.post(url, _form(acme.tenant, **SHORT), follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert shown == ["Not saved: Only a tenant admin may change review policies."], shown
    assert response.redirect_chain == [(url, 302)]
    assert not ReviewPolicy.objects.exists()
    assert not LogEntry.objects.exists()  # nothing logged as done


def test_reviewers_have_no_policy_admin(acme):
    client = _staff(acme.reviewer)
    assert client.get("/admin/reviews/reviewpolicy/").status_code == 403


def test_the_task_detail_shows_the_timers(acme):
    patch(acme.admin, acme, {"legal": SHORT})
    with TestCase.captureOnCommitCallbacks(execute=True):
        contract = submit(acme, HIGH_RISK_TEXT)
    task = ReviewTask.objects.get(contract=contract)
    detail = acme.reviewer.client.get(acme.url(f"reviews/{task.pk}/")).json()
    for name in ("due_at", "remind_at", "escalate_at", "expire_at"):
        assert detail[name] == getattr(task, name).isoformat().replace("+00:00", "Z"), name
    assert (detail["reminded_at"], detail["escalated_at"], detail["expired_at"]) == (None, None, None)
    assert detail["priority"] == round(50 * task.risk_score)
