from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from config.api_errors import Conflict, NotFound
from config.compiled_sql import CompiledQuery, placeholder_int, placeholder_str, placeholder_uuid
from tenants.models import ApiToken, AuditRecord, Membership, Role, Tenant


def tenant_get_for_member(*, slug: str, user: AbstractBaseUser) -> tuple[Tenant, Membership]:
    """The tenant behind `slug` and the user's membership of it. A tenant the user
    does not belong to is a 404, exactly like one that does not exist."""
    membership = _MEMBERSHIP_BY_SLUG.first(slug=slug, user_id=user.pk)
    if membership is None:
        raise NotFound()
    return membership.tenant, membership


def membership_get(*, tenant: Tenant, user: AbstractBaseUser) -> Membership | None:
    return _MEMBERSHIP.first(tenant_id=tenant.pk, user_id=user.pk)


# Read on every tenant request and by every service that checks a role: compiled once
# (config.compiled_sql). A user has at most one membership per tenant.
_MEMBERSHIP_BY_SLUG = CompiledQuery(
    lambda slug, user_id: Membership.objects.select_related("tenant").filter(tenant__slug=slug, user_id=user_id)[:1],
    slug=placeholder_str(1), user_id=placeholder_int(1),
)
_MEMBERSHIP = CompiledQuery(
    lambda tenant_id, user_id: Membership.objects.select_related("tenant").filter(tenant_id=tenant_id, user_id=user_id)[:1],
    tenant_id=placeholder_uuid(1), user_id=placeholder_int(1),
)


def tenant_admin_required(*, tenant: Tenant, user: AbstractBaseUser, action: str) -> Membership:
    """The caller's membership, if they are a tenant admin; else Forbidden, saying what
    only an admin may do. What every admin-only service checks."""
    from config.api_errors import Forbidden

    membership = membership_get(tenant=tenant, user=user)
    if membership is None or membership.role != Role.ADMIN:
        raise Forbidden(f"Only a tenant admin may {action}.")
    return membership


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


def agent_token_owner_check(*, membership: Membership) -> None:
    """Token operations are for the tenant's own service accounts. A token belongs to the
    user, so touching the tokens of someone who is also in another tenant (or of a
    platform operator) would reach beyond this tenant."""
    user = membership.user
    if membership.role != Role.AGENT:
        raise Conflict("Tokens are managed here for agents only.", fields={"member": ["Not an agent."]})
    if user.is_staff or user.is_superuser:
        raise Conflict("Tokens of staff accounts are managed by the platform.", fields={"member": ["Staff account."]})
    if Membership.objects.filter(user_id=membership.user_id).exclude(tenant_id=membership.tenant_id).exists():
        raise Conflict("This agent also belongs to another tenant.", fields={"member": ["Belongs to another tenant too."]})


def agent_token_list(*, membership: Membership) -> QuerySet[ApiToken]:
    """Tokens of one of the tenant's own agents (see tenants.services); nothing for a
    member who also belongs elsewhere, whose tokens are not this tenant's to show."""
    agent_token_owner_check(membership=membership)
    return ApiToken.objects.filter(user_id=membership.user_id).order_by("-created_at")


def agent_token_get(*, membership: Membership, token_id: int) -> ApiToken:
    token = agent_token_list(membership=membership).filter(pk=token_id).first()
    if token is None:
        raise NotFound()
    return token
