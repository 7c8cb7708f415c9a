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
    # Which role gives the independent sign-off on critical risk (besides tenant admins).
    signoff_role = models.CharField(
        max_length=20, default="senior_reviewer", choices=[("senior_reviewer", "Senior reviewer"), ("admin", "Tenant admin")]
    )
    # Any clause finding (uncapped liability, broad indemnity, unilateral termination,
    # penalty, auto-renewal; not a missing governing-law clause alone) sends the contract
    # to legal review, whatever its score. On by default: each of them is a clause a
    # lawyer flags on sight, and one alone scores below the threshold. Off, only the
    # score above `risk_threshold` does.
    review_any_clause_finding = models.BooleanField(
        default=True,
        help_text="Send every contract with a clause finding (not a missing governing-law clause alone) to legal "
        "review, whatever its risk score. Off: only a score above the risk threshold does.",
    )
    # Fail safe: when the analyser cannot vouch for its reading (a long text in which no
    # clause rule found anything, or a text it cannot read well: see
    # contracts.graph.analyzer), send the contract to legal review with the reason
    # instead of auto-approving it. On by default: a missed risk that auto-signs costs
    # far more than a reviewer's look at a contract that turns out to be fine.
    review_when_unsure = models.BooleanField(
        default=True,
        help_text="Send a contract to legal review, with the reason, when the risk analyser cannot vouch for "
        "its reading (a long text with no finding, or a text it cannot read well), instead of auto-approving it.",
    )
    # How long a reviewer's claim on a task lasts before it returns to the queue.
    claim_lease_seconds = models.PositiveIntegerField(default=15 * 60, validators=[MinValueValidator(10)])
    # A new review task is due this many hours after it is created (queue ordering by deadline).
    review_due_hours = models.PositiveIntegerField(default=24, validators=[MinValueValidator(1)])
    # Checkpoints of a thread are pruned this many days after its contract finished
    # (contracts.retention); the contract's final state, decisions and audit stay in our
    # own tables. Empty: kept for ever.
    checkpoint_retention_days = models.PositiveIntegerField(
        null=True, blank=True, default=30, validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Days after a contract finishes before its LangGraph checkpoints are deleted (its final state, "
        "decisions and audit are kept). Empty: keep them for ever.",
    )
    # Last sequence number given to one of this tenant's queue events (see reviews.events).
    event_seq = models.BigIntegerField(default=0, editable=False)
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
# Humans: may read the review queue (agents may not).
PEOPLE_ROLES = frozenset(Role.values) - {Role.AGENT}
# Roles that may submit contracts.
SUBMITTING_ROLES = frozenset({Role.ADMIN, Role.SENIOR_REVIEWER, Role.REVIEWER, Role.AGENT})


class Team(models.TextChoices):
    """Per-tenant reviewer groups that review tasks are routed to (see tenants.routing)."""

    REVIEWERS = "reviewers"  # every reviewer and senior reviewer: legal review
    SENIOR = "senior"  # senior reviewers: critical sign-off
    FINANCE = "finance"  # members flagged as finance approvers: finance review


class Membership(TenantOwned):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    # Puts the member in the tenant's finance team, which finance reviews are routed to.
    finance_approver = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_one_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant.slug}: {self.get_role_display().lower()}"


class TenantGroup(TenantOwned):
    """The auth Group behind one team of one tenant; guardian grants go to these groups."""

    team = models.CharField(max_length=20, choices=Team.choices)
    group = models.OneToOneField("auth.Group", on_delete=models.CASCADE, related_name="tenant_group")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "team"], name="tenant_group_one_per_team")]

    def __str__(self) -> str:
        # The auth Group behind it is named "<tenant-uuid>:<team>"; people read this.
        return f"{self.tenant.slug}: {self.get_team_display()}"


class AuditRecord(TenantOwned):
    """Append-only: every decision, claim, grant, revoke and membership change. No
    interface updates or deletes these rows (the admin is read-only, the API list-only)."""

    class Interface(models.TextChoices):
        API = "api"
        ADMIN = "admin"
        COMMAND = "command"
        WEBSOCKET = "websocket"
        SYSTEM = "system"
        # The LangGraph-compatible API and its Agent Inbox prefix (contracts.platform).
        LANGGRAPH = "langgraph", "LangGraph API"
        AGENT_INBOX = "agent-inbox", "Agent Inbox"

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=40)
    interface = models.CharField(max_length=12, choices=Interface.choices)
    target_type = models.CharField(max_length=40)
    target_id = models.CharField(max_length=64)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="audit_tenant_created")]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Audit records are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit records are append-only")


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
