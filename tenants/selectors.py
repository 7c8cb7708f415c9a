from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from config.api_errors import NotFound
from tenants.models import Membership, Tenant


def tenant_get_for_member(*, slug: str, user: AbstractBaseUser) -> tuple[Tenant, Membership]:
    """The tenant behind `slug` and the user's membership of it. A tenant the user
    does not belong to is a 404, exactly like one that does not exist."""
    membership = (
        Membership.objects.select_related("tenant")
        .filter(tenant__slug=slug, user_id=user.pk)
        .first()
    )
    if membership is None:
        raise NotFound()
    return membership.tenant, membership


def membership_get(*, tenant: Tenant, user: AbstractBaseUser) -> Membership | None:
    return Membership.objects.filter(tenant=tenant, user_id=user.pk).first()
