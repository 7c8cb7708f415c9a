"""Review policies: how long a task of each kind may wait, and what happens as it waits.

The rules are named once, here, and read by the services, the timers (the scheduler's
jobs in reviews.timers), the queue's selectors and the admin:
- the defaults a tenant has until it sets a policy (`POLICY_DEFAULTS`, `policy_default`),
- which combinations are valid (`policy_errors`),
- the times a new task gets (`policy_schedule`) and what it copies of the policy,
- a task's priority (`task_priority`) and where it stands against its due date
  (`task_due_status`).

Reads only: writes are reviews.services.review_policies_set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from config.compiled_sql import CompiledQuery, placeholder_uuid
from reviews.models import ESCALATION_TEAM_CHOICES, ExpiryAction, ReviewKind, ReviewPolicy, ReviewStatus, ReviewTask
from tenants.models import Tenant

MIN_SECONDS = 60
MAX_SECONDS = 365 * 24 * 3600

# A tenant that has set nothing: due after `Tenant.review_due_hours` (24 h unless
# changed), a reminder when a twelfth of that time is left (2 h of 24 h), no escalation,
# no expiry. Nothing automatic decides or re-routes a task unless the tenant chose it:
# those change who owns a decision, which is the tenant's call to make.
DEFAULT_REMIND_FRACTION = 12

POLICY_FIELDS = (
    "due_after_seconds",
    "remind_before_due_seconds",
    "escalate_after_seconds",
    "escalation_team",
    "escalation_keeps_grants",
    "expire_after_seconds",
    "expiry_action",
    "expiry_reason",
)


@dataclass(frozen=True)
class Policy:
    kind: str
    due_after_seconds: int
    remind_before_due_seconds: int | None = None
    escalate_after_seconds: int | None = None
    escalation_team: str = ""
    escalation_keeps_grants: bool = True
    expire_after_seconds: int | None = None
    expiry_action: str = ExpiryAction.NOTHING
    expiry_reason: str = ""
    is_default: bool = False

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in POLICY_FIELDS}

    def snapshot(self) -> dict[str, Any]:
        """What a task keeps of the policy it was created under."""
        data = asdict(self)
        data["expiry_reason"] = policy_expiry_reason(self)
        return data


def default_remind_before(due_after_seconds: int) -> int | None:
    """The default reminder for a due time: a twelfth of it, none when that is under a minute."""
    remind = due_after_seconds // DEFAULT_REMIND_FRACTION
    return remind if remind >= MIN_SECONDS else None


def policy_default(*, tenant: Tenant, kind: str) -> Policy:
    due = tenant.review_due_hours * 3600
    return Policy(kind=kind, due_after_seconds=due, remind_before_due_seconds=default_remind_before(due), is_default=True)


def _from_row(row: ReviewPolicy) -> Policy:
    return Policy(kind=row.kind, **{name: getattr(row, name) for name in POLICY_FIELDS})


# Read for every new review task: compiled once (config.compiled_sql).
_TENANT_POLICIES = CompiledQuery(lambda tenant_id: ReviewPolicy.objects.filter(tenant_id=tenant_id),
                                 tenant_id=placeholder_uuid(1))


def review_policies_effective(*, tenant: Tenant) -> dict[str, Policy]:
    """The policy in force for every kind of the tenant (its own, or the default): one query."""
    rows = {row.kind: _from_row(row) for row in _TENANT_POLICIES.fetch(tenant_id=tenant.pk)}
    return {kind: rows.get(kind) or policy_default(tenant=tenant, kind=kind) for kind in ReviewKind.values}


def policy_expiry_reason(policy: Policy) -> str:
    """The reason an expiry records: the tenant's own words, or one that says what happened."""
    if policy.expiry_reason.strip():
        return policy.expiry_reason.strip()
    if policy.expire_after_seconds is None:
        return ""
    return (f"No decision within {_duration(policy.expire_after_seconds)}: "
            f"the {ReviewKind(policy.kind).label.lower()} review policy {_expiry_words(policy.expiry_action)}.")


def _expiry_words(action: str) -> str:
    return {ExpiryAction.REJECT: "rejects it", ExpiryAction.ESCALATE: "escalates it"}.get(action, "marks it expired")


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def policy_errors(values: dict[str, Any]) -> dict[str, list[str]]:
    """Everything wrong with a whole policy (every field present), by field. The one
    check behind the API's 400s and the admin form's errors."""
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    due = values.get("due_after_seconds")
    remind = values.get("remind_before_due_seconds")
    escalate = values.get("escalate_after_seconds")
    expire = values.get("expire_after_seconds")
    for name in ("due_after_seconds", "remind_before_due_seconds", "escalate_after_seconds", "expire_after_seconds"):
        value = values.get(name)
        if value is None:
            if name == "due_after_seconds":
                add(name, "Required.")
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not MIN_SECONDS <= value <= MAX_SECONDS:
            add(name, f"Whole seconds from {MIN_SECONDS} to {MAX_SECONDS}.")
    if errors:
        return errors
    if remind is not None and remind >= due:
        add("remind_before_due_seconds", "Must be less than due_after_seconds: the reminder comes before the task is due.")
    if expire is not None and expire < due:
        add("expire_after_seconds", "Must be at least due_after_seconds: a task expires no earlier than it is due.")
    if escalate is not None and expire is not None and escalate >= expire:
        add("escalate_after_seconds", "Must be less than expire_after_seconds: an escalation after the expiry never happens.")
    action = values.get("expiry_action")
    if action not in ExpiryAction.values:
        add("expiry_action", f"One of {', '.join(ExpiryAction.values)} (an expiry never approves).")
    elif action != ExpiryAction.NOTHING and expire is None:
        add("expiry_action", f"'{action}' needs expire_after_seconds.")
    team = values.get("escalation_team")
    if team not in {value for value, _ in ESCALATION_TEAM_CHOICES}:
        add("escalation_team", "A team of the tenant (reviewers, senior, finance), or empty for tenant admins only.")
    if not isinstance(values.get("escalation_keeps_grants"), bool):
        add("escalation_keeps_grants", "true or false.")
    reason = values.get("expiry_reason")
    if not isinstance(reason, str) or len(reason) > 500:
        add("expiry_reason", "Text of at most 500 characters.")
    return errors


# --- What a new task gets ------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    due_at: datetime
    remind_at: datetime | None
    escalate_at: datetime | None
    expire_at: datetime | None


def policy_schedule(policy: Policy, *, created: datetime) -> Schedule:
    def after(seconds: int | None) -> datetime | None:
        return None if seconds is None else created + timedelta(seconds=seconds)

    due_at = created + timedelta(seconds=policy.due_after_seconds)
    remind_at = None if policy.remind_before_due_seconds is None else due_at - timedelta(seconds=policy.remind_before_due_seconds)
    return Schedule(due_at=due_at, remind_at=remind_at, escalate_at=after(policy.escalate_after_seconds),
                    expire_at=after(policy.expire_after_seconds))


# Priority, 0 to 100, higher first (the queue's `ordering=priority`): half from risk,
# then raised as the due date nears (the reminder) and again on escalation. Ties go to
# the earlier due date.
PRIORITY_RISK_WEIGHT = 50
PRIORITY_DUE_SOON = 20
PRIORITY_ESCALATED = 30
PRIORITY_MAX = 100


def task_priority(*, risk_score: float, due_soon: bool = False, escalated: bool = False) -> int:
    value = round(PRIORITY_RISK_WEIGHT * max(0.0, min(1.0, risk_score)))
    value += PRIORITY_DUE_SOON if due_soon else 0
    value += PRIORITY_ESCALATED if escalated else 0
    return min(PRIORITY_MAX, value)


DUE_STATUSES = ("on_time", "due_soon", "overdue", "met", "missed")


def task_due_status(task: ReviewTask, *, now: datetime) -> str | None:
    """Where the task stands against its due date: pending tasks are `on_time`,
    `due_soon` (past their reminder time) or `overdue`; decided ones `met` or `missed`
    it; cancelled ones, and tasks without a due date, have no standing (None)."""
    if task.due_at is None:
        return None
    if task.status == ReviewStatus.RESOLVED:
        if task.decided_at is None:
            return None
        return "met" if task.decided_at <= task.due_at else "missed"
    if task.status != ReviewStatus.PENDING:
        return None
    if now >= task.due_at:
        return "overdue"
    if task.remind_at is not None and now >= task.remind_at:
        return "due_soon"
    return "on_time"
