from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from tenants.models import TenantOwned


class ContractStatus(models.TextChoices):
    # A LangGraph-API thread made before its input (threads.create, then a run with the
    # contract): no text yet, nothing to drive until the first run submits it.
    CREATED = "created"
    SUBMITTED = "submitted"  # saved, its first run is queued (or a retry was asked for)
    RUNNING = "running"  # the thread is between two steps: a run died there and is continued
    WAITING_FOR_REVIEW = "waiting_for_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    AMENDED = "amended"
    AUTO_APPROVED = "auto_approved"
    CANCELLED = "cancelled"
    FAILED = "failed"  # runs kept failing, retries used up; a tenant admin (or a new decision) retries it


FINAL_STATUSES = frozenset(
    {ContractStatus.APPROVED, ContractStatus.REJECTED, ContractStatus.AMENDED, ContractStatus.AUTO_APPROVED, ContractStatus.CANCELLED}
)


RUN_STATES = ["created", "running", "waiting_for_review", "completed", "failed"]


class Contract(TenantOwned):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200)
    text = models.TextField()
    # "<tenant-uuid>:contract:<contract-uuid>": a thread id names its tenant, so a
    # guessed id can never be resolved through another tenant.
    thread_id = models.CharField(max_length=120, editable=False)
    status = models.CharField(max_length=24, choices=ContractStatus.choices, default=ContractStatus.SUBMITTED)
    risk_score = models.FloatField(null=True, blank=True)
    findings = models.JSONField(default=list, blank=True)
    payments = models.JSONField(default=list, blank=True)
    amendments = models.JSONField(default=list, blank=True)
    amended_text = models.TextField(blank=True)
    decision_history = models.JSONField(default=list, blank=True)
    # How the risk analysis went (the graph's `analysis`): analyser and sources, an LLM
    # fallback and its reason, why the analyser was unsure and whether that alone sent
    # the contract to legal review.
    analysis = models.JSONField(default=dict, blank=True)
    # The LangGraph API's thread metadata as its clients set it (threads.create and
    # update); `graph_id` and `assistant_id` are never stored: every contract is a thread
    # of the one graph (contracts.platform adds them when it shows a thread).
    thread_metadata = models.JSONField(default=dict, blank=True)
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # Run lease: the worker currently driving this thread. One holder at a time is what
    # keeps two workers from running the same thread; it expires so a crashed worker's
    # lease can be taken over by recovery.
    run_lease_owner = models.CharField(max_length=32, blank=True)
    run_lease_until = models.DateTimeField(null=True, blank=True)
    # Runs that raised in a row; the scheduler retries at `retry_at` with exponential
    # backoff, and after settings.RUN_RETRY_ATTEMPTS the contract is `failed`.
    run_attempts = models.PositiveSmallIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)
    # When retention deleted the thread's checkpoints (contracts.retention).
    checkpoints_pruned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # Granted per object: may resume any review task of this thread, present or future.
        permissions = [("resume_thread", "Can resume every review task of this thread")]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "thread_id"], name="contract_thread_per_tenant"),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "-created_at"], name="contract_tenant_status"),
            models.Index(fields=["tenant", "-created_at"], name="contract_tenant_created"),
            # Recovery looks across tenants for the few contracts in flight; each partial
            # index holds only those rows, so scanning it whole stays cheap at any size.
            models.Index(fields=["tenant", "run_lease_until"], condition=models.Q(run_lease_until__isnull=False),
                         name="contract_lease_held"),
            models.Index(fields=["tenant", "retry_at"], condition=models.Q(retry_at__isnull=False),
                         name="contract_retry_due"),
            models.Index(fields=["tenant", "updated_at"], condition=models.Q(status__in=["submitted", "running"]),
                         name="contract_in_flight"),
            # Retention's scan: finished contracts whose checkpoints are still there.
            models.Index(fields=["tenant", "completed_at"], name="contract_prunable",
                         condition=models.Q(completed_at__isnull=False, checkpoints_pruned_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return self.title

    @staticmethod
    def thread_id_for(tenant_id: uuid.UUID, contract_id: uuid.UUID) -> str:
        return f"{tenant_id}:contract:{contract_id}"

    @property
    def run_state(self) -> str:
        if self.status == ContractStatus.CREATED:
            return "created"
        if self.status in FINAL_STATUSES:
            return "completed"
        if self.status == ContractStatus.WAITING_FOR_REVIEW:
            return "waiting_for_review"
        if self.status == ContractStatus.FAILED:
            return "failed"
        return "running"


# --- Runs of the LangGraph-compatible API ---------------------------------------------


class RunKind(models.TextChoices):
    INPUT = "input"  # the contract's title and text: submits it
    RESUME = "resume"  # command.resume: review decisions answering the thread's interrupts


class Run(TenantOwned):
    """One request to advance a contract's thread through the LangGraph-compatible API
    (contracts.platform): its input, or decisions answering its interrupts. The row
    records the request and what it carried; its status is derived from the rows the
    request advanced (the contract, the review tasks it decided: see
    contracts.selectors.run_status), so a run can never disagree with them, and the
    drive, which knows nothing of runs, stays the only writer of a thread's progress."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    contract = models.ForeignKey(Contract, on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=8, choices=RunKind.choices)
    # The review tasks whose decisions a resume carried (ids as strings).
    task_ids = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # The run options as the client sent them (stream mode, multitask strategy, ...),
    # without the input itself (that is the contract).
    kwargs = models.JSONField(default=dict, blank=True)
    multitask_strategy = models.CharField(max_length=16, default="enqueue")
    # Which prefix it came through: "langgraph" or "agent-inbox" (as in the audit trail).
    via = models.CharField(max_length=12)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "contract", "-created_at"], name="run_thread_created")]

    def __str__(self) -> str:
        return f"{self.kind} run of {self.contract_id}"


# --- Object permissions (thread-wide grants) -------------------------------------------

from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase  # noqa: E402

RESUME_THREAD_PERM = "resume_thread"


class ContractUserPermission(TenantOwned, UserObjectPermissionBase):
    content_object = models.ForeignKey(Contract, on_delete=models.CASCADE, related_name="user_permissions")
    # A personal grant belongs to the membership it was given under: removing the member
    # removes it (by cascade, so tenants never has to know about grants), and re-adding
    # them later does not bring it back.
    membership = models.ForeignKey("tenants.Membership", on_delete=models.CASCADE, related_name="+")

    class Meta(UserObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["tenant", "user", "content_object"], name="contract_uperm_lookup")]


class ContractGroupPermission(TenantOwned, GroupObjectPermissionBase):
    content_object = models.ForeignKey(Contract, on_delete=models.CASCADE, related_name="group_permissions")

    class Meta(GroupObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["tenant", "group", "content_object"], name="contract_gperm_lookup")]
