"""seed_demo gives every demo tenant users (finance approvers marked) and contracts that
wait for review, and a second run changes nothing."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from contracts.models import Contract
from reviews.models import ReviewTask
from tenants.models import Membership

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]


def seed() -> dict:
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_seed_demo_makes_a_queue_to_work_on_and_is_idempotent(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    first = seed()
    for tenant in first["tenants"]:
        finance = [u["username"] for u in tenant["users"] if u["finance_approver"]]
        assert finance == [f"{tenant['slug']}-reviewer2"]
        assert Membership.objects.get(user__username=finance[0]).finance_approver
        kinds = {c["title"]: sorted(ReviewTask.objects.filter(contract_id=c["id"]).values_list("kind", flat=True))
                 for c in tenant["contracts"]}
        # The immediate task backend ran each graph: legal; legal and finance; critical legal.
        assert kinds == {"Cloud hosting MSA": ["legal"], "Data centre build-out": ["finance", "legal"],
                         "Exclusive supply deal": ["legal"]}
    assert seed() == first
    assert Contract.objects.count() == 6
