from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from tenants.models import ApiToken, Membership, Tenant


def api_token_create(*, user: AbstractBaseUser, name: str = "default", key: str | None = None) -> tuple[ApiToken, str]:
    """Create a token and return it with its clear key, which is never stored."""
    key = key or ApiToken.new_key()
    token = ApiToken.objects.create(user=user, name=name, key_hash=ApiToken.hash_key(key), prefix=key[:8])
    return token, key


def api_token_revoke(*, token: ApiToken) -> None:
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])


def membership_set(*, tenant: Tenant, user: AbstractBaseUser, role: str) -> Membership:
    membership, _ = Membership.objects.update_or_create(tenant=tenant, user=user, defaults={"role": role})
    return membership
