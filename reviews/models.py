from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from tenants.models import TenantOwned


class ReviewKind(models.TextChoices):
    LEGAL = "legal"
    FINANCE = "finance"
    SIGNOFF = "signoff", "Sign-off"


class ReviewStatus(models.TextChoices):
    PENDING = "pending"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


class ReviewTask(TenantOwned):
    """One pending `interrupt()` of one thread, waiting for a human."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    contract = models.ForeignKey("contracts.Contract", on_delete=models.CASCADE, related_name="review_tasks")
    thread_id = models.CharField(max_length=120)
    interrupt_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=ReviewKind.choices)
    payload = models.JSONField()
    response_schema = models.JSONField(null=True, blank=True)
    risk_score = models.FloatField(default=0.0)
    status = models.CharField(max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.PENDING)
    # The claim: who works on the task, until when. Past `claim_expires_at` the task is
    # back in the queue without anyone acting.
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    decision = models.JSONField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    # Set when the graph has consumed the decision. resolved + not applied = a decision
    # recorded whose resume has not completed yet; recovery re-drives exactly these.
    applied_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-risk_score", "created_at"]
        permissions = [("resume_reviewtask", "Can resume this review task")]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "thread_id", "interrupt_id"], name="review_one_per_interrupt"),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "-risk_score", "created_at"], name="review_queue"),
            models.Index(fields=["tenant", "status", "created_at"], name="review_queue_age"),
            models.Index(fields=["tenant", "status", "due_at"], name="review_queue_due"),
            models.Index(fields=["tenant", "contract"], name="review_contract"),
            # Decisions recorded but not consumed by the graph yet (few at any time): recovery's scan.
            models.Index(fields=["tenant", "decided_at"], condition=models.Q(status="resolved", applied_at__isnull=True),
                         name="review_unapplied"),
            # Live claims (few): the scheduler's scan for expired ones.
            models.Index(fields=["tenant", "claim_expires_at"],
                         condition=models.Q(status="pending", claimed_by__isnull=False), name="review_claimed"),
        ]

    def __str__(self) -> str:
        # What a person recognises a task by (grant pickers, autocomplete, messages).
        return f"{self.contract.title}: {self.get_kind_display()} review"


class QueueEvent(TenantOwned):
    """Durable copy of every live queue event, for catch-up after a missed message.
    `seq` increases per tenant without gaps in commit order of the tenant counter."""

    seq = models.BigIntegerField()
    type = models.CharField(max_length=32)
    task = models.ForeignKey(ReviewTask, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    contract = models.ForeignKey("contracts.Contract", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["seq"]
        constraints = [models.UniqueConstraint(fields=["tenant", "seq"], name="queue_event_seq_per_tenant")]


class IdempotencyRecord(TenantOwned):
    """The first response to a request carrying an Idempotency-Key, for replay."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64)  # sha256 of method, path and body
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "user", "key"], name="idempotency_key_per_user")]


# --- Object permissions ---------------------------------------------------------------
# guardian's direct foreign-key permission models (much faster than its generic ones at
# scale), each also carrying the tenant so every permission lookup is tenant-scoped.

from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase  # noqa: E402

RESUME_TASK_PERM = "resume_reviewtask"


class ReviewTaskUserPermission(TenantOwned, UserObjectPermissionBase):
    content_object = models.ForeignKey(ReviewTask, on_delete=models.CASCADE, related_name="user_permissions")
    # A personal grant belongs to the membership it was given under: removing the member
    # removes it (by cascade, so tenants never has to know about grants), and re-adding
    # them later does not bring it back.
    membership = models.ForeignKey("tenants.Membership", on_delete=models.CASCADE, related_name="+")

    class Meta(UserObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["tenant", "user", "content_object"], name="review_uperm_lookup")]


class ReviewTaskGroupPermission(TenantOwned, GroupObjectPermissionBase):
    content_object = models.ForeignKey(ReviewTask, on_delete=models.CASCADE, related_name="group_permissions")

    class Meta(GroupObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["tenant", "group", "content_object"], name="review_gperm_lookup")]


# --- Live queue stream ----------------------------------------------------------------


class WebsocketTicket(TenantOwned):
    """A short-lived, single-use credential for opening one queue websocket, so API
    token clients never put their token in a URL (URLs end up in access logs). Only
    its SHA-256 is stored. Bound to one user and one tenant; `api_token` is the token
    it was minted with (null for a browser session), re-checked on every event so
    revoking that token ends the socket too."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    api_token = models.ForeignKey("tenants.ApiToken", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    key_hash = models.CharField(max_length=64)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "key_hash"], name="websocket_ticket_key_per_tenant")]
