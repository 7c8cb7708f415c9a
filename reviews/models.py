from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from tenants.models import Team, TenantOwned


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
    # sha256 of the canonical JSON of the interrupt value this task shows
    # (contracts.graph.runner.interrupt_digest). A decision is bound to it: a resume is
    # refused while the live interrupt differs from it, or a client that sends the
    # digest it saw (If-Match) saw something else.
    payload_digest = models.CharField(max_length=64, blank=True)
    response_schema = models.JSONField(null=True, blank=True)
    risk_score = models.FloatField(default=0.0)
    status = models.CharField(max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.PENDING)
    # The claim: who works on the task, until when. Past `claim_expires_at` the task is
    # back in the queue without anyone acting.
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    # Time on the queue (reviews.policies, reviews.timers). The times are stamped from the
    # kind's review policy when the task is created, and the rules the timers follow are
    # copied into `policy`: a task keeps the policy it was created under. Each `*_at` of
    # the clock is set by the scheduler job that acted, exactly once.
    priority = models.PositiveSmallIntegerField(default=0)
    remind_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    escalate_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    expire_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    policy = models.JSONField(default=dict, blank=True)
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
            # The queue by kind (the legal or finance queue): without it a kind that is rare
            # among a tenant's pending tasks is found by reading every pending task's row.
            models.Index(fields=["tenant", "status", "kind", "-risk_score", "created_at"], name="review_queue_kind"),
            models.Index(fields=["tenant", "status", "created_at"], name="review_queue_age"),
            models.Index(fields=["tenant", "status", "due_at"], name="review_queue_due"),
            models.Index(fields=["tenant", "status", "-priority", "due_at"], name="review_queue_priority"),
            models.Index(fields=["tenant", "contract"], name="review_contract"),
            # Decisions recorded but not consumed by the graph yet (few at any time): recovery's scan.
            models.Index(fields=["tenant", "decided_at"], condition=models.Q(status="resolved", applied_at__isnull=True),
                         name="review_unapplied"),
            # Live claims (few): the scheduler's scan for expired ones.
            models.Index(fields=["tenant", "claim_expires_at"],
                         condition=models.Q(status="pending", claimed_by__isnull=False), name="review_claimed"),
            # The timers' scans: each holds only the pending tasks whose timer has not
            # fired yet, and a task leaves it when it fires or is decided.
            models.Index(fields=["tenant", "remind_at"], name="review_remind_due",
                         condition=models.Q(status="pending", remind_at__isnull=False, reminded_at__isnull=True)),
            models.Index(fields=["tenant", "escalate_at"], name="review_escalate_due",
                         condition=models.Q(status="pending", escalate_at__isnull=False, escalated_at__isnull=True)),
            models.Index(fields=["tenant", "expire_at"], name="review_expire_due",
                         condition=models.Q(status="pending", expire_at__isnull=False, expired_at__isnull=True)),
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
    # Set by reviews.events before the row is written: the same instant goes out in the
    # NOTIFY that carries the event to the relays.
    created_at = models.DateTimeField(default=timezone.now, editable=False)

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


# --- Time on the queue ------------------------------------------------------------------


class ExpiryAction(models.TextChoices):
    """What the clock does when a task expires. There is no "approve": an expiry never
    says yes on anyone's behalf."""

    NOTHING = "nothing", "Nothing (the task stays open, marked expired)"
    ESCALATE = "escalate", "Escalate"
    REJECT = "reject", "Reject, with the recorded reason"


# Where an escalation sends a task: one of the tenant's teams, or "" for nobody but the
# tenant admins (who may act on every task anyway).
ESCALATION_TEAM_CHOICES = [*Team.choices, ("", "Tenant admins only")]


class ReviewPolicy(TenantOwned):
    """How long a review task of one kind may wait in one tenant, and what happens as it
    waits. A kind without a row follows the defaults (reviews.policies). Times count
    from the task's creation."""

    kind = models.CharField(max_length=16, choices=ReviewKind.choices)
    due_after_seconds = models.PositiveIntegerField()
    remind_before_due_seconds = models.PositiveIntegerField(null=True, blank=True)
    escalate_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    escalation_team = models.CharField(max_length=20, choices=ESCALATION_TEAM_CHOICES, blank=True)
    # Escalation adds the escalation team's grant; with this off it also takes away the
    # task's own grants (its routed team's and personal ones), so only the escalation
    # team (and tenant admins, and thread-wide grants) may still decide.
    escalation_keeps_grants = models.BooleanField(default=True)
    expire_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    expiry_action = models.CharField(max_length=16, choices=ExpiryAction.choices, default=ExpiryAction.NOTHING)
    expiry_reason = models.CharField(max_length=500, blank=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "review policies"
        constraints = [models.UniqueConstraint(fields=["tenant", "kind"], name="review_policy_one_per_kind")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} review policy"


class ReviewComment(TenantOwned):
    """A note a reviewer leaves on a task before it is decided; also in the audit trail."""

    task = models.ForeignKey(ReviewTask, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    author_username = models.CharField(max_length=150)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["tenant", "task", "created_at"], name="review_comment_task")]

    def __str__(self) -> str:
        return f"comment by {self.author_username} on {self.task_id}"


# --- Webhooks ---------------------------------------------------------------------------


class WebhookEndpoint(TenantOwned):
    """A URL of the tenant's that is told of its queue events (reviews.webhooks)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    # Which event types (reviews.events.EVENT_TYPES) it receives.
    event_types = models.JSONField(default=list)
    # "whsec_<base64>" (Standard Webhooks): the HMAC key of its signatures. Kept in clear
    # because every delivery is signed with it; shown on creation and rotation only.
    secret = models.CharField(max_length=100, editable=False)
    is_active = models.BooleanField(default=True)
    # The fan-out's cursor: every event of the tenant up to this seq has its delivery.
    last_seq = models.BigIntegerField(default=0, editable=False)
    # Events pruned from the log before they could be turned into deliveries (the
    # scheduler was away longer than QUEUE_EVENT_RETENTION_DAYS).
    events_missed = models.PositiveIntegerField(default=0, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["tenant", "created_at"], name="webhook_endpoint_tenant")]

    def __str__(self) -> str:
        return self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # every attempt used up; a tenant admin may send it again


class WebhookDelivery(TenantOwned):
    """One event for one endpoint, with every attempt to send it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    seq = models.BigIntegerField()
    event_type = models.CharField(max_length=32)
    # The exact bytes sent, and signed, on every attempt.
    body = models.TextField()
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The sender's claim: no other sender touches the delivery before `lease_until`, and
    # only the holder of `lease_token` records its outcome.
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Every attempt: {"at", "status_code", "error", "duration_ms"}.
    attempt_log = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "endpoint", "seq"], name="webhook_delivery_once_per_event"),
        ]
        indexes = [
            models.Index(fields=["tenant", "endpoint", "-created_at"], name="webhook_delivery_endpoint"),
            # The sender's scan: only deliveries still to be sent.
            models.Index(fields=["tenant", "next_attempt_at"], condition=models.Q(status="pending"),
                         name="webhook_delivery_due"),
        ]

    @property
    def message_id(self) -> str:
        """The Standard Webhooks `webhook-id`: the same on every attempt, for receivers
        to drop a duplicate."""
        return f"msg_{self.pk.hex}"

    def __str__(self) -> str:
        return f"{self.event_type} #{self.seq} to {self.endpoint_id}"
