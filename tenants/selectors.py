from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from config.api_errors import NotFound
from tenants.models import ApiToken, AuditRecord, Membership, Tenant


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


def membership_list(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__username")


def membership_get_by_id(*, tenant: Tenant, member_id: int) -> Membership:
    membership = membership_list(tenant=tenant).filter(pk=member_id).first()
    if membership is None:
        raise NotFound()
    return membership


def membership_get_by_username(*, tenant: Tenant, username: str) -> Membership | None:
    return membership_list(tenant=tenant).filter(user__username=username).first()


def audit_list(*, tenant: Tenant) -> QuerySet[AuditRecord]:
    return AuditRecord.objects.filter(tenant=tenant)


def agent_token_list(*, membership: Membership) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user_id=membership.user_id).order_by("-created_at")


def agent_token_get(*, membership: Membership, token_id: int) -> ApiToken:
    token = agent_token_list(membership=membership).filter(pk=token_id).first()
    if token is None:
        raise NotFound()
    return token
