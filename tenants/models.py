from __future__ import annotations

import hashlib
import secrets
import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    # A contract whose risk score is strictly above this goes to legal review.
    risk_threshold = models.FloatField(
        default=0.7, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    # A payment commitment at or above this amount (any currency) goes to finance review.
    finance_limit = models.DecimalField(max_digits=18, decimal_places=2, default=Decimal("100000"))
    # Risk at or above this needs a second, independent sign-off after a legal approval.
    critical_risk = models.FloatField(
        default=0.9, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class TenantOwned(models.Model):
    """Base of every tenant-owned model. Indexes and unique constraints of subclasses
    start with `tenant` (enforced by tenants.checks)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")

    class Meta:
        abstract = True


class Role(models.TextChoices):
    ADMIN = "admin", "Tenant admin"
    SENIOR_REVIEWER = "senior_reviewer", "Senior reviewer"
    REVIEWER = "reviewer", "Reviewer"
    VIEWER = "viewer", "Viewer"
    AGENT = "agent", "Agent (service account)"


# Roles that may decide review tasks at all; object permissions narrow it further.
DECIDING_ROLES = frozenset({Role.ADMIN, Role.SENIOR_REVIEWER, Role.REVIEWER})
# Roles that may submit contracts.
SUBMITTING_ROLES = frozenset({Role.ADMIN, Role.SENIOR_REVIEWER, Role.REVIEWER, Role.AGENT})


class Membership(TenantOwned):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_one_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant_id}: {self.role}"


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for the API. Only its SHA-256 is stored: a leaked database
    does not leak working credentials."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, default="default")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=8, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def hash_key(key: str) -> str:
        return _hash_key(key)

    @staticmethod
    def new_key() -> str:
        return secrets.token_urlsafe(32)
