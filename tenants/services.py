from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction
from django.utils import timezone

from config.api_errors import Conflict
from config.compiled_writes import CompiledInsert
from tenants.models import ApiToken, AuditRecord, Membership, Role, Team, Tenant, TenantGroup
from tenants.selectors import agent_token_owner_check


def api_token_create(*, user: AbstractBaseUser, name: str = "default", key: str | None = None) -> tuple[ApiToken, str]:
    """Create a token and return it with its clear key, which is never stored."""
    key = key or ApiToken.new_key()
    token = ApiToken.objects.create(user=user, name=name, key_hash=ApiToken.hash_key(key), prefix=key[:8])
    return token, key


def api_token_revoke(*, token: ApiToken) -> None:
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])


# Written with every decision: its SQL rendered once (config.compiled_writes).
_AUDIT_INSERT = CompiledInsert(AuditRecord)


def audit_record(
    *,
    tenant: Tenant,
    actor: AbstractBaseUser | None,
    action: str,
    via: str,
    target: Any,
    data: dict | None = None,
) -> AuditRecord:
    return _AUDIT_INSERT.create(
        tenant=tenant,
        actor=actor,
        actor_username=actor.get_username() if actor is not None else "",
        action=action,
        interface=via,
        target_type=type(target).__name__.lower(),
        target_id=str(target.pk),
        data=data or {},
    )


def tenant_group_get(*, tenant: Tenant, team: str) -> Group:
    """The auth Group of one team of one tenant, created on first use."""
    tenant_group = TenantGroup.objects.select_related("group").filter(tenant=tenant, team=team).first()
    if tenant_group is not None:
        return tenant_group.group
    with transaction.atomic():
        group, _ = Group.objects.get_or_create(name=f"{tenant.id}:{team}")
        tenant_group, _ = TenantGroup.objects.get_or_create(tenant=tenant, team=team, defaults={"group": group})
    return tenant_group.group


def _teams_for(membership: Membership) -> set[str]:
    teams = set()
    if membership.role in (Role.REVIEWER, Role.SENIOR_REVIEWER):
        teams.add(Team.REVIEWERS)
    if membership.role == Role.SENIOR_REVIEWER:
        teams.add(Team.SENIOR)
    if membership.finance_approver and membership.role in (Role.REVIEWER, Role.SENIOR_REVIEWER, Role.ADMIN):
        teams.add(Team.FINANCE)
    return teams


def _teams_sync(*, tenant: Tenant, user: AbstractBaseUser, teams: set[str]) -> None:
    """Make the user's groups in this tenant exactly `teams`; other tenants' untouched."""
    for team in Team.values:
        group = tenant_group_get(tenant=tenant, team=team)
        if team in teams:
            group.user_set.add(user)
        else:
            group.user_set.remove(user)


@transaction.atomic
def membership_set(
    *,
    tenant: Tenant,
    user: AbstractBaseUser,
    role: str,
    finance_approver: bool | None = None,
    actor: AbstractBaseUser | None = None,
    via: str = AuditRecord.Interface.SYSTEM,
) -> Membership:
    """Create or change a membership and the team groups that follow from it. Takes
    effect on the next request: permissions are read fresh every time."""
    defaults: dict[str, Any] = {"role": role}
    if finance_approver is not None:
        defaults["finance_approver"] = finance_approver
    membership, created = Membership.objects.update_or_create(tenant=tenant, user=user, defaults=defaults)
    _teams_sync(tenant=tenant, user=user, teams=_teams_for(membership))
    audit_record(
        tenant=tenant,
        actor=actor,
        action="membership.created" if created else "membership.changed",
        via=via,
        target=membership,
        data={"user": user.get_username(), "role": membership.role, "finance_approver": membership.finance_approver},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: AbstractBaseUser | None, via: str) -> None:
    """Remove a member: their team groups in this tenant go too, and their personal
    grants with the membership row (the grant tables reference it, ON DELETE CASCADE)."""
    tenant, user = membership.tenant, membership.user
    _teams_sync(tenant=tenant, user=user, teams=set())
    audit_record(tenant=tenant, actor=actor, action="membership.removed", via=via, target=membership,
                 data={"user": user.get_username(), "role": membership.role})
    membership.delete()


def _admins_left_after(membership: Membership, new_role: str | None) -> int:
    others = Membership.objects.filter(tenant_id=membership.tenant_id, role=Role.ADMIN).exclude(pk=membership.pk).count()
    return others + (1 if new_role == Role.ADMIN else 0)


def member_add(
    *, tenant: Tenant, username: str, role: str, finance_approver: bool, actor: AbstractBaseUser, via: str
) -> Membership:
    """Add a person to the tenant: an existing account joins; a new name gets an account
    without a password (set through the admin or a password reset)."""
    from django.contrib.auth import get_user_model

    if Membership.objects.filter(tenant=tenant, user__username=username).exists():
        raise Conflict(f"username: {username} is already a member.", fields={"username": ["Already a member."]})
    if get_user_model().objects.filter(username=username, is_superuser=True).exists():
        raise Conflict("username: platform operators cannot be added to a tenant.", fields={"username": ["Not allowed."]})
    with transaction.atomic():
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        return membership_set(tenant=tenant, user=user, role=role, finance_approver=finance_approver, actor=actor, via=via)


def member_change(
    *, membership: Membership, role: str, finance_approver: bool, actor: AbstractBaseUser, via: str
) -> Membership:
    with transaction.atomic():
        # Lock the tenant's admin rows so two admins demoting each other cannot both succeed.
        list(Membership.objects.select_for_update().filter(tenant_id=membership.tenant_id, role=Role.ADMIN))
        if membership.role == Role.ADMIN and _admins_left_after(membership, role) == 0:
            raise Conflict("role: a tenant keeps at least one admin.", fields={"role": ["The last admin cannot be demoted."]})
        return membership_set(
            tenant=membership.tenant, user=membership.user, role=role, finance_approver=finance_approver, actor=actor, via=via
        )


def member_remove(*, membership: Membership, actor: AbstractBaseUser, via: str) -> None:
    with transaction.atomic():
        list(Membership.objects.select_for_update().filter(tenant_id=membership.tenant_id, role=Role.ADMIN))
        if membership.role == Role.ADMIN and _admins_left_after(membership, None) == 0:
            raise Conflict("A tenant keeps at least one admin.", fields={"member": ["The last admin cannot be removed."]})
        membership_remove(membership=membership, actor=actor, via=via)


def agent_token_issue(*, membership: Membership, name: str, actor: AbstractBaseUser, via: str) -> tuple[ApiToken, str]:
    """A tenant admin issues an API token for one of the tenant's own agents."""
    agent_token_owner_check(membership=membership)
    with transaction.atomic():
        token, key = api_token_create(user=membership.user, name=name)
        audit_record(tenant=membership.tenant, actor=actor, action="token.issued", via=via, target=membership,
                     data={"user": membership.user.get_username(), "token": token.prefix, "name": name})
    return token, key


def agent_token_revoke(*, membership: Membership, token: ApiToken, actor: AbstractBaseUser, via: str) -> None:
    agent_token_owner_check(membership=membership)
    with transaction.atomic():
        api_token_revoke(token=token)
        audit_record(tenant=membership.tenant, actor=actor, action="token.revoked", via=via, target=membership,
                     data={"user": membership.user.get_username(), "token": token.prefix})


# --- Signing in: a password, or a one-time link to set one --------------------------------


def member_sign_in_check(*, membership: Membership) -> None:
    """A tenant admin may give a password only to an account that is this tenant's
    alone: setting the password of someone who also belongs to another tenant (or of a
    platform operator) would let one tenant's admin sign in as them everywhere."""
    user = membership.user
    if user.is_superuser:
        raise Conflict("Platform operators manage their own passwords.", fields={"member": ["Platform operator."]})
    if Membership.objects.filter(user_id=membership.user_id).exclude(tenant_id=membership.tenant_id).exists():
        raise Conflict("This person also belongs to another tenant: only they can change their password.",
                       fields={"member": ["Belongs to another tenant too."]})
    if membership.role == Role.AGENT:
        raise Conflict("Agents sign in with API tokens, not passwords.", fields={"member": ["An agent."]})


def _sign_in_enable(user: AbstractBaseUser) -> None:
    # People work in the Django admin, which lets in staff accounts only; what they see
    # there is still decided by their tenant roles.
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])


def member_password_set(*, membership: Membership, password: str, actor: AbstractBaseUser, via: str) -> None:
    """Give a member a password (checked by AUTH_PASSWORD_VALIDATORS) and admin access."""
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    from config.api_errors import InvalidInput

    member_sign_in_check(membership=membership)
    user = membership.user
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(f"password: {exc.messages[0]}", fields={"password": list(exc.messages)}) from None
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        _sign_in_enable(user)
        audit_record(tenant=membership.tenant, actor=actor, action="member.password_set", via=via, target=membership,
                     data={"user": user.get_username()})


def member_password_link_create(*, membership: Membership, actor: AbstractBaseUser, via: str) -> str:
    """A link (a path) with which the member sets their own password, once: Django's
    password-reset token, valid for PASSWORD_RESET_TIMEOUT and spent as soon as the
    password changes (the token covers the password hash). The admin hands it over."""
    from django.contrib.auth.tokens import default_token_generator
    from django.urls import reverse
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    member_sign_in_check(membership=membership)
    user = membership.user
    with transaction.atomic():
        _sign_in_enable(user)
        audit_record(tenant=membership.tenant, actor=actor, action="member.password_link", via=via,
                     target=membership, data={"user": user.get_username()})
    return reverse("password_reset_confirm", kwargs={"uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
                                                     "token": default_token_generator.make_token(user)})


def tenant_retention_set(*, tenant: Tenant, days: int | None, actor: AbstractBaseUser, via: str) -> Tenant:
    """How many days after a contract finishes its checkpoints are deleted (None: never).
    Audited; the next retention run applies it."""
    with transaction.atomic():  # the setting and its audit record together
        previous = tenant.checkpoint_retention_days
        tenant.checkpoint_retention_days = days
        tenant.save(update_fields=["checkpoint_retention_days"])
        audit_record(tenant=tenant, actor=actor, action="retention.changed", via=via, target=tenant,
                     data={"checkpoint_retention_days": days, "previous": previous})
    return tenant
