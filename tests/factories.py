"""Every test object is made here."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from tenants.models import Membership, Role, Tenant
from tenants.services import api_token_create, membership_set

# Scores 0.8245: uncapped liability + broad indemnity + unilateral termination.
HIGH_RISK_TEXT = (
    "MASTER SERVICES AGREEMENT. This agreement is governed by the laws of England. "
    "Supplier shall have unlimited liability for any breach. "
    "Customer shall indemnify Supplier against any and all claims arising from the services. "
    "Supplier may terminate this agreement at any time without cause. "
    "Customer shall pay EUR 20,000 per year."
)
# Scores 0.7953 (uncapped liability, unilateral termination, a penalty): legal review
# only, at the priority of a risk of 0.8 (round(50 x risk) = 40).
LEGAL_REVIEW_TEXT = (
    "MASTER SERVICES AGREEMENT. This agreement is governed by the laws of England. "
    "Supplier shall have unlimited liability for any breach. "
    "Supplier may terminate this agreement at any time without cause. "
    "Late delivery incurs a penalty of USD 1,000 per day."
)
# Scores >= 0.9: every rule fires.
CRITICAL_RISK_TEXT = (
    "SUPPLY AGREEMENT. Supplier shall have unlimited liability. "
    "Customer shall indemnify Supplier against any and all claims. "
    "Supplier may terminate this agreement at any time without cause. "
    "Late delivery incurs a penalty of USD 1,000 per day. "
    "This agreement renews automatically each year."
)
# Low risk but a large payment: finance review only.
LARGE_PAYMENT_TEXT = (
    "PURCHASE ORDER. This order is governed by the laws of Delaware. "
    "Buyer shall pay USD 250,000 within 30 days of delivery."
)
# High risk and a large payment: legal and finance review in parallel.
HIGH_RISK_LARGE_PAYMENT_TEXT = HIGH_RISK_TEXT + " Customer shall also pay a one-off fee of USD 500,000."
LOW_RISK_TEXT = (
    "NON-DISCLOSURE AGREEMENT. This agreement is governed by the laws of Ireland. "
    "Each party keeps the other's confidential information secret for two years."
)


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda t: t.slug.title())


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user-{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "pw-123456789")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.REVIEWER


def member_create(tenant: Tenant, role: str, username: str | None = None, *, finance_approver: bool = False):
    """A user with `role` in `tenant` (and its team groups) and an API token; returns
    (user, token key)."""
    kwargs = {"username": username} if username else {}
    user = UserFactory(**kwargs)
    user.save()
    membership_set(tenant=tenant, user=user, role=role, finance_approver=finance_approver)
    _, key = api_token_create(user=user, name="test")
    return user, key
