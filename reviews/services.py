from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pydantic
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, connection, transaction
from django.db.models.signals import post_migrate
from django.dispatch import receiver
from django.utils import timezone

from config.api_errors import Conflict, Forbidden, IdempotencyKeyReused, InvalidInput, NotFound
from config.compiled_sql import CompiledQuery, placeholder_uuid
from config.compiled_writes import CompiledInsert, CompiledUpdate
from contracts.graph import runner
from contracts.graph.decisions import DECISION_MODELS
from contracts.models import Contract
from contracts.tasks import contract_drive_enqueue
from reviews import events
from reviews.models import (
    RESUME_TASK_PERM,
    IdempotencyRecord,
    ReviewComment,
    ReviewKind,
    ReviewPolicy,
    ReviewStatus,
    ReviewTask,
    ReviewTaskGroupPermission,
    ReviewTaskUserPermission,
)
from reviews.policies import (
    POLICY_FIELDS,
    Policy,
    default_remind_before,
    policy_errors,
    policy_schedule,
    review_policies_effective,
    task_priority,
)
from reviews.selectors import (
    GRANT_MODELS,
    resume_grant_refusal,
    review_task_bulk_refusal,
    review_task_can_resume,
    review_task_for_bare_answer,
    review_task_four_eyes_blocks,
    review_task_get,
    review_tasks_of_thread,
    review_tasks_pending_for_thread,
    signoff_role_refusal,
)
from tenants.models import DECIDING_ROLES, Membership, Role, Tenant, TenantGroup
from tenants.routing import review_team_for
from tenants.selectors import membership_get, membership_get_by_username, tenant_admin_required
from tenants.services import audit_record, tenant_group_get

if TYPE_CHECKING:
    from contracts.graph.runner import PendingInterrupt


def review_tasks_sync(*, contract: Contract, pending: list[PendingInterrupt], now: datetime | None = None) -> list[ReviewTask]:
    """One ReviewTask per pending interrupt. Idempotent: the unique constraint on
    (tenant, thread, interrupt id) makes a second sync of the same interrupts a no-op,
    which is what lets recovery re-run it after a crash. Each task gets the times of its
    kind's review policy, counted from `now`, and a copy of that policy."""
    if not pending:
        return []
    tenant = contract.tenant
    now = now or timezone.now()
    policies = review_policies_effective(tenant=tenant)
    created = []
    for item in pending:
        policy = policies[item.kind]
        schedule = policy_schedule(policy, created=now)
        risk_score = float(item.payload.get("risk_score") or 0.0)
        # A task that exists already (a re-sync, or a concurrent one: not expected under
        # the run lease, but the constraint, not the lease, is what guarantees one task)
        # is skipped by the insert, which then returns None.
        task = _TASK_INSERT.create(
            tenant_id=contract.tenant_id,
            contract=contract,
            thread_id=contract.thread_id,
            interrupt_id=item.id,
            kind=item.kind,
            payload=item.payload,
            payload_digest=item.digest,
            response_schema=item.response_schema,
            risk_score=risk_score,
            priority=task_priority(risk_score=risk_score),
            due_at=schedule.due_at,
            remind_at=schedule.remind_at,
            escalate_at=schedule.escalate_at,
            expire_at=schedule.expire_at,
            policy=policy.snapshot(),
        )
        if task is not None:
            created.append(task)
    _review_tasks_route(tenant=tenant, tasks=created)
    for task in created:
        events.event_emit(tenant_id=tenant.id, type=events.REVIEW_CREATED, task=task,
                          extra={"due_at": task.due_at.isoformat(), "priority": task.priority})
    return created


def _review_tasks_route(*, tenant: Tenant, tasks: list[ReviewTask]) -> None:
    """Grant each new task's resume permission to the team its kind is routed to."""
    permission_id = _permission_id(ReviewTask, RESUME_TASK_PERM)
    for task in tasks:
        team = review_team_for(tenant=tenant, kind=task.kind)
        if team is not None:
            _GRANT_INSERT.create(tenant=tenant, content_object=task, group_id=_team_group_id(tenant=tenant, team=team),
                                 permission_id=permission_id)


# The rows every review task writes, as SQL rendered once (config.compiled_writes).
_TASK_INSERT = CompiledInsert(ReviewTask, ignore_conflicts=True)
_GRANT_INSERT = CompiledInsert(ReviewTaskGroupPermission, ignore_conflicts=True)
_DECISION_SAVE = CompiledUpdate(
    ReviewTask, ["status", "decision", "decided_by", "decided_at", "claimed_by", "claim_expires_at", "updated_at"]
)


def _permission(model: type, codename: str) -> Permission:
    return Permission.objects.get(content_type=ContentType.objects.get_for_model(model), codename=codename)


# Ids that never change once created (a permission row, a team's group), kept per
# process and database: every new task needs both, and looking them up cost two queries
# per task. Cleared whenever the tables are rebuilt (post_migrate, which a flush sends too).
_ids: dict[tuple, int] = {}


def _cached_id(key: tuple, lookup: Callable[[], int]) -> int:
    key = (connection.settings_dict["NAME"], *key)
    value = _ids.get(key)
    if value is None:
        value = lookup()
        # Kept only once committed: a row created in a transaction that rolls back must
        # not be remembered.
        transaction.on_commit(lambda: _ids.__setitem__(key, value))
    return value


def _permission_id(model: type, codename: str) -> int:
    return _cached_id(("permission", model._meta.label, codename), lambda: _permission(model, codename).pk)


def _team_group_id(*, tenant: Tenant, team: str) -> int:
    return _cached_id(("team", tenant.pk, team), lambda: tenant_group_get(tenant=tenant, team=team).pk)


@receiver(post_migrate)
def _ids_forget(**kwargs) -> None:
    _ids.clear()


def review_decision_validate(*, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """Validate a reviewer's answer against the schema the interrupt declared. Errors
    name the field, e.g. {"decision": ["Input should be 'approve', 'reject' or 'amend'"]}."""
    client_fields = {k: v for k, v in data.items() if k in ("decision", "amendments", "comment")}
    unknown = sorted(set(data) - set(client_fields))
    if unknown:
        raise InvalidInput(f"{unknown[0]}: unknown field", fields={name: ["Unknown field."] for name in unknown})
    try:
        model = DECISION_MODELS[kind].model_validate(client_fields)
    except pydantic.ValidationError as exc:
        fields: dict[str, list[str]] = {}
        for error in exc.errors():
            location = ".".join(str(part) for part in error["loc"])
            message = error["msg"]
            if not location and message.startswith("Value error, "):
                location, _, message = message.removeprefix("Value error, ").partition(": ")
            fields.setdefault(location or "non_field_errors", []).append(message)
        first_field, messages = next(iter(fields.items()))
        raise InvalidInput(f"{first_field}: {messages[0]}", fields=fields) from None
    return model.model_dump(include={"decision", "amendments", "comment"})


def review_task_resume(
    *,
    tenant: Tenant,
    task_id: UUID | str,
    user: AbstractBaseUser,
    data: dict[str, Any],
    via: str = "api",
    seen_digest: str | None = None,
    now: datetime | None = None,
    membership: Membership | None = None,
) -> ReviewTask:
    """Record a reviewer's decision exactly once, then queue the graph's resume.

    Lock the task row, refuse unless it is still pending (and not claimed by someone
    else) and the thread's live interrupt is still the one the task shows (and, given
    `seen_digest`, the one the reviewer saw), record, commit. Of any number of racing
    calls only the first sees `pending`; the rest get a Conflict. The graph is resumed
    by a worker after commit (by interrupt id), never under this lock; a decision
    recorded but not yet applied is re-driven by recovery.
    """
    return _resume(tenant=tenant, task_id=task_id, user=user, data=data, via=via, seen_digest=seen_digest, now=now,
                   membership=membership)[0]


def review_task_resume_idempotent(
    *,
    tenant: Tenant,
    task_id: UUID | str,
    user: AbstractBaseUser,
    data: dict[str, Any],
    key: str,
    fingerprint: str,
    via: str = "api",
    seen_digest: str | None = None,
    now: datetime | None = None,
    membership: Membership | None = None,
) -> tuple[dict, bool]:
    """As review_task_resume, keyed by the client's Idempotency-Key: a retry with the
    same key and request gets the first receipt back without a second effect (returns
    (receipt, replayed)); the same key with another request is refused."""
    task, receipt, replayed = _resume(
        tenant=tenant, task_id=task_id, user=user, data=data, via=via, seen_digest=seen_digest, now=now,
        idempotency=(key, fingerprint), membership=membership,
    )
    return receipt, replayed


def resume_receipt(task: ReviewTask) -> dict[str, Any]:
    return {
        "id": str(task.pk),
        "contract": str(task.contract_id),
        "kind": task.kind,
        "status": task.status,
        "decision": task.decision,
        "decided_at": task.decided_at.isoformat() if task.decided_at else None,
    }


def _resume(
    *,
    tenant: Tenant,
    task_id: UUID | str,
    user: AbstractBaseUser,
    data: dict[str, Any],
    via: str,
    now: datetime | None,
    seen_digest: str | None = None,
    idempotency: tuple[str, str] | None = None,
    membership: Membership | None = None,
) -> tuple[ReviewTask, dict, bool]:
    """`membership`: the caller's, when the interface has just read it (a tenant API
    view has); read here otherwise."""
    now = now or timezone.now()
    with transaction.atomic():
        # The row lock serialises racing resumes of this task, and with them racing
        # retries of one Idempotency-Key: the key's record is written in this same
        # transaction, so a retry either sees it or waits for it. The task is read once,
        # locked; the checks below are short (the permission check is one compiled query).
        task = _TASK_LOCKED.first(tenant_id=tenant.pk, task_id=task_id)
        if task is None:
            raise NotFound()
        if membership is None or membership.user_id != user.pk or membership.tenant_id != tenant.pk:
            membership = membership_get(tenant=tenant, user=user)
        if not review_task_can_resume(task=task, user=user, membership=membership):
            raise Forbidden("You may not resume this review task.")
        decision = review_decision_validate(kind=task.kind, data=data)
        if idempotency is not None:
            replay = idempotency_replay(tenant=tenant, user=user, key=idempotency[0], fingerprint=idempotency[1])
            if replay is not None:
                return task, replay, True
        if task.status != ReviewStatus.PENDING:
            raise Conflict(f"This task is already {task.status}.", extra={"status": task.status})
        if task.claimed_by_id not in (None, user.pk) and task.claim_expires_at and task.claim_expires_at > now:
            raise Conflict(
                f"This task is claimed by {task.claimed_by.get_username()} until {task.claim_expires_at.isoformat()}.",
                extra={"status": task.status, **_claim_info(task)},
            )
        if task.kind == ReviewKind.SIGNOFF:
            _four_eyes_check(task=task, user=user)
        _shown_interrupt_check(task=task, seen_digest=seen_digest)
        review_task_decision_record(tenant=tenant, task=task, decision=decision, user=user, via=via, now=now)
        receipt = resume_receipt(task)
        if idempotency is not None:
            # The task lock serialises one key on one task; the same key raced onto
            # another task (another request) loses here, and its decision rolls back.
            idempotency_remember(tenant=tenant, user=user, key=idempotency[0], fingerprint=idempotency[1],
                                 status=202, body=receipt)
    return task, receipt, False


# The resume's first read, compiled once (config.compiled_sql).
_TASK_LOCKED = CompiledQuery(
    lambda tenant_id, task_id: ReviewTask.objects.select_for_update(no_key=True).filter(tenant_id=tenant_id, pk=task_id)[:1],
    tenant_id=placeholder_uuid(1), task_id=placeholder_uuid(2),
)


def review_task_decision_record(
    *,
    tenant: Tenant,
    task: ReviewTask,
    decision: dict[str, Any],
    user: AbstractBaseUser | None,
    via: str,
    now: datetime,
    audit_data: dict[str, Any] | None = None,
) -> None:
    """Write a decision on the task, audit and announce it, and queue the graph's resume:
    the one place a decision is recorded, a reviewer's (through review_task_resume) or
    the system's (`user` None: an expiry, reviews.timers). The caller holds the task's
    row lock inside its transaction and has found the task pending; that lock is what
    lets exactly one of two racing decisions through. `decision` is validated."""
    task.status = ReviewStatus.RESOLVED
    task.decision = {
        **decision,
        "decided_by": user.pk if user is not None else None,
        "decided_by_username": user.get_username() if user is not None else None,
        "decided_at": now.isoformat(),
        "task_id": str(task.pk),
    }
    task.decided_by = user
    task.decided_at = now
    # Resuming an unclaimed task claims it implicitly: the record shows who worked it.
    task.claimed_by = user
    task.claim_expires_at = None
    _DECISION_SAVE.save(task)
    audit_record(tenant=tenant, actor=user, action="review.resolved", via=via, target=task,
                 data={"decision": decision["decision"], "kind": task.kind, "contract": str(task.contract_id),
                       **(audit_data or {})})
    contract_drive_enqueue(tenant_id=tenant.id, contract_id=task.contract_id)
    # The event last: it holds the tenant's row lock (event numbers) until the commit.
    events.event_emit(tenant_id=tenant.id, type=events.REVIEW_RESOLVED, task=task)


def _shown_interrupt_check(*, task: ReviewTask, seen_digest: str | None) -> None:
    """A decision is bound to what the reviewer saw. LangGraph's interrupt id names a
    position in the graph, not a question: the same id could carry another value, and
    the answer would then go to a question nobody read. Refused (409) when the client
    saw another version than the task shows (`seen_digest`, e.g. from If-Match), or when
    the thread's live interrupt with this id is gone or differs from the task.

    Read under the task's row lock, from the checkpointer's own connection: a drive
    that moves the thread meanwhile consumes only decisions for interrupts still
    pending, and the graph's interrupt values are pure functions of checkpointed state."""
    if seen_digest is not None and seen_digest != task.payload_digest:
        raise Conflict(
            "You decided on another version of this task than it shows now; reload it and decide again.",
            extra={"reason": "stale_digest", "payload_digest": task.payload_digest},
        )
    live = {item.id: item.digest for item in runner.thread_pending_read(task.thread_id)}
    if task.interrupt_id not in live:
        raise Conflict(
            "The thread is no longer waiting on this interrupt.", extra={"reason": "interrupt_gone", "status": task.status}
        )
    if live[task.interrupt_id] != task.payload_digest:
        raise Conflict(
            "The thread's interrupt changed since this task was made: it asks something else now.",
            extra={"reason": "interrupt_changed", "payload_digest": task.payload_digest},
        )


# --- Idempotency-Key ------------------------------------------------------------------


def idempotency_replay(*, tenant: Tenant, user: AbstractBaseUser, key: str, fingerprint: str) -> dict | None:
    """The response body first given for this key, or None if the key is new. The same
    key with another request (another fingerprint) is refused. Call it under the lock
    that serialises the request's effect, so a racing retry sees the first one's record."""
    record = IdempotencyRecord.objects.filter(tenant=tenant, user=user, key=key).first()
    if record is None:
        return None
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "Idempotency-Key was already used with a different request.",
            fields={"Idempotency-Key": ["Already used with a different request."]},
        )
    return record.response_body


def idempotency_remember(
    *, tenant: Tenant, user: AbstractBaseUser, key: str, fingerprint: str, status: int, body: dict
) -> None:
    """Keep the response for replay, in the caller's transaction (with the effect). A
    concurrent first use of the same key elsewhere wins, and this one is refused."""
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(tenant=tenant, user=user, key=key, fingerprint=fingerprint,
                                             response_status=status, response_body=body)
    except IntegrityError:
        raise IdempotencyKeyReused(
            "Idempotency-Key was already used with a different request.",
            fields={"Idempotency-Key": ["Already used with a different request."]},
        ) from None


def review_tasks_resume_for_thread(
    *,
    tenant: Tenant,
    contract_id: UUID,
    user: AbstractBaseUser,
    via: str,
    answers: dict[str, dict[str, Any]] | None = None,
    bare: dict[str, Any] | None = None,
    seen_digests: frozenset[str] | None = None,
) -> list[ReviewTask]:
    """One command answering interrupts of one thread (the LangGraph API's
    `command.resume`): `answers` by interrupt id, or one `bare` answer for the single
    pending interrupt the caller may decide. Each decision goes through
    review_task_resume (permissions, claims, four eyes, the interrupt it showed).

    All or nothing: an id that is unknown or already answered refuses the whole command
    before anything is recorded (409, listing the ids still pending), and the decisions
    are recorded in one transaction (the caller's, if it has one), so one refused
    decision records none. Tasks are locked in primary-key order, so two commands over
    the same tasks cannot deadlock. `seen_digests`: the payload digests of what the
    client saw (If-Match); each task decided must show one of them."""
    if (answers is None) == (bare is None):
        raise InvalidInput("Give answers by interrupt id or one bare answer.", fields={"resume": ["Required."]})
    membership = membership_get(tenant=tenant, user=user)
    pending = review_tasks_pending_for_thread(tenant=tenant, contract_id=contract_id)
    pending_ids = [task.interrupt_id for task in pending]
    if bare is not None:
        targets = [(review_task_for_bare_answer(tenant=tenant, contract_id=contract_id, user=user, membership=membership),
                    bare)]
    else:
        if not answers:
            raise InvalidInput("resume: the map of answers is empty.", fields={"resume": ["Empty."]})
        by_id = {task.interrupt_id: task for task in pending}
        unknown = [iid for iid in answers if iid not in by_id]
        if unknown:
            known = {task.interrupt_id for task in review_tasks_of_thread(tenant=tenant, contract_id=contract_id)}
            answered = [iid for iid in unknown if iid in known]
            reason = "already_resolved" if answered else "unknown_interrupt"
            what = "already answered" if answered else "not an interrupt of this thread"
            raise Conflict(f"Interrupt {unknown[0]} is {what}.",
                           extra={"reason": reason, "interrupt_ids": unknown, "pending_ids": pending_ids})
        targets = [(by_id[iid], answer) for iid, answer in answers.items()]
    recorded = []
    with transaction.atomic():
        for task, answer in sorted(targets, key=lambda target: str(target[0].pk)):
            try:
                # A task whose digest the client did not send was not what it saw: "" never
                # matches, so the check refuses it.
                seen = None if seen_digests is None else task.payload_digest if task.payload_digest in seen_digests else ""
                recorded.append(review_task_resume(tenant=tenant, task_id=task.pk, user=user, data=answer, via=via,
                                                   seen_digest=seen))
            except (Conflict, Forbidden, InvalidInput) as exc:
                # Name the interrupt the refusal is about; a Conflict (a decision got
                # there first, or the interrupt moved) also lists what is pending now.
                exc.extra.setdefault("interrupt_ids", [task.interrupt_id])
                if isinstance(exc, Conflict):
                    exc.extra["pending_ids"] = [
                        t.interrupt_id for t in review_tasks_pending_for_thread(tenant=tenant, contract_id=contract_id)
                    ]
                raise
    return recorded


def review_tasks_resume_batch(
    *, tenant: Tenant, user: AbstractBaseUser, items: list[dict[str, Any]], via: str = "api"
) -> list[dict[str, Any]]:
    """Apply each item on its own (its own authorisation, its own transaction): one
    item's failure never touches another, and no item is ever half-applied. Critical-risk
    and sign-off tasks are refused (`forbidden`): never decided in bulk."""
    outcomes = []
    for item in items:
        task_id = item["id"]
        data = {k: v for k, v in item.items() if k != "id"}
        try:
            # The one rule of bulk decisions, as in the admin: some tasks need a person
            # to look at them alone.
            refusal = review_task_bulk_refusal(task=review_task_get(tenant=tenant, task_id=task_id))
            if refusal:
                raise Forbidden(f"Not in a batch: {refusal}; decide it on its own.", extra={"reason": "not_in_bulk"})
            task = review_task_resume(tenant=tenant, task_id=task_id, user=user, data=data, via=via)
        except NotFound:
            outcomes.append({"id": str(task_id), "outcome": "not_found"})
        except Forbidden as exc:
            outcomes.append({"id": str(task_id), "outcome": "forbidden", "message": exc.message})
        except Conflict as exc:
            outcomes.append({"id": str(task_id), "outcome": "conflict", "message": exc.message})
        except InvalidInput as exc:
            outcomes.append({"id": str(task_id), "outcome": "invalid", "message": exc.message, "fields": exc.fields})
        else:
            outcomes.append({"id": str(task_id), "outcome": "resolved", "receipt": resume_receipt(task)})
    return outcomes


# --- Claims ---------------------------------------------------------------------------


def _claim_info(task: ReviewTask) -> dict[str, Any]:
    return {
        "claimed_by": task.claimed_by.get_username() if task.claimed_by_id else None,
        "claim_expires_at": task.claim_expires_at.isoformat() if task.claim_expires_at else None,
    }


def review_task_claim(
    *, tenant: Tenant, task_id: UUID | str, user: AbstractBaseUser, via: str = "api", now: datetime | None = None
) -> ReviewTask:
    """Give the caller a lease on the task (or renew their own). A live claim of
    someone else is a Conflict naming the holder and the expiry; an expired one is
    simply taken over."""
    task = review_task_get(tenant=tenant, task_id=task_id)
    if not review_task_can_resume(task=task, user=user, membership=membership_get(tenant=tenant, user=user)):
        raise Forbidden("You may not work on this review task.")
    now = now or timezone.now()
    with transaction.atomic():
        # The row lock makes claim a compare-and-set: of N racing claims one wins.
        task = ReviewTask.objects.select_for_update(no_key=True).get(tenant=tenant, pk=task.pk)
        if task.status != ReviewStatus.PENDING:
            raise Conflict(f"This task is already {task.status}.", extra={"status": task.status})
        if task.claimed_by_id not in (None, user.pk) and task.claim_expires_at and task.claim_expires_at > now:
            raise Conflict(
                f"This task is claimed by {task.claimed_by.get_username()} until {task.claim_expires_at.isoformat()}.",
                extra=_claim_info(task),
            )
        renewal = task.claimed_by_id == user.pk and task.claim_expires_at and task.claim_expires_at > now
        task.claimed_by = user
        task.claim_expires_at = now + timedelta(seconds=tenant.claim_lease_seconds)
        task.save(update_fields=["claimed_by", "claim_expires_at", "updated_at"])
        audit_record(tenant=tenant, actor=user, action="review.claim_renewed" if renewal else "review.claimed",
                     via=via, target=task, data=_claim_info(task))
        events.event_emit(tenant_id=tenant.id, type=events.REVIEW_CLAIMED, task=task)
    return task


def review_claims_expire(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Give back every claim whose lease has run out, announcing each (review.released)
    so live queues show the task as free again. Each row is re-checked under its lock,
    so a claim renewed meanwhile is kept, and a claim is expired exactly once however
    many schedulers race. Returns how many were expired."""
    now = now or timezone.now()
    candidates = list(
        ReviewTask.objects.filter(status=ReviewStatus.PENDING, claimed_by__isnull=False, claim_expires_at__lte=now)
        .values_list("tenant_id", "pk")[:batch_size]
    )
    expired = 0
    for tenant_id, task_id in candidates:
        with transaction.atomic():
            task = (
                ReviewTask.objects.select_for_update(no_key=True)
                .select_related("tenant", "claimed_by")
                .filter(tenant_id=tenant_id, pk=task_id, status=ReviewStatus.PENDING, claim_expires_at__lte=now)
                .first()
            )
            if task is None or task.claimed_by_id is None:
                continue
            previous = _claim_info(task)
            task.claimed_by, task.claim_expires_at = None, None
            task.save(update_fields=["claimed_by", "claim_expires_at", "updated_at"])
            audit_record(tenant=task.tenant, actor=None, action="review.claim_expired", via="system", target=task,
                         data=previous)
            events.event_emit(tenant_id=tenant_id, type=events.REVIEW_RELEASED, task=task)
            expired += 1
    return expired


def review_task_release(
    *, tenant: Tenant, task_id: UUID | str, user: AbstractBaseUser, via: str = "api", now: datetime | None = None
) -> ReviewTask:
    """Give a claim back. Only its holder may, or a tenant admin."""
    task = review_task_get(tenant=tenant, task_id=task_id)
    membership = membership_get(tenant=tenant, user=user)
    now = now or timezone.now()
    with transaction.atomic():
        task = ReviewTask.objects.select_for_update(no_key=True).get(tenant=tenant, pk=task.pk)
        live = task.claimed_by_id is not None and task.claim_expires_at is not None and task.claim_expires_at > now
        if task.status != ReviewStatus.PENDING or not live:
            raise Conflict("This task has no live claim to release.", extra={"status": task.status})
        if task.claimed_by_id != user.pk and (membership is None or membership.role != Role.ADMIN):
            raise Forbidden("Only the holder of the claim, or a tenant admin, may release it.", extra=_claim_info(task))
        previous = _claim_info(task)
        task.claimed_by, task.claim_expires_at = None, None
        task.save(update_fields=["claimed_by", "claim_expires_at", "updated_at"])
        audit_record(tenant=tenant, actor=user, action="review.released", via=via, target=task, data=previous)
        events.event_emit(tenant_id=tenant.id, type=events.REVIEW_RELEASED, task=task)
    return task


# --- Queue primitives of the drive ---------------------------------------------------
# contracts.services drives a thread and calls these for the queue's side of each step.


def review_tasks_mark_applied(*, tenant_id: UUID, task_ids: list[UUID], now: datetime) -> int:
    """Record that the graph has consumed these decisions (it has moved past them).
    Idempotent: a task already marked keeps its first time."""
    if not task_ids:
        return 0
    return ReviewTask.objects.filter(tenant_id=tenant_id, pk__in=task_ids, applied_at__isnull=True).update(applied_at=now)


def review_tasks_cancel_pending(
    *,
    contract: Contract,
    user: AbstractBaseUser | None,
    via: str,
    through_task_id: UUID | str | None = None,
    now: datetime | None = None,
) -> list[ReviewTask]:
    """Close every pending task of the contract: cancelled, claims dropped, audited and
    announced. `through_task_id`: the cancel was asked for through this task, which must
    be one of them (else Conflict, nothing changed). Runs inside the caller's
    transaction, which holds the contract's row lock (lock order: contract, its tasks,
    then, in event_emit, the tenant row; the drive's)."""
    tenant = contract.tenant
    pending = list(
        ReviewTask.objects.select_for_update(no_key=True).filter(tenant=tenant, contract=contract, status=ReviewStatus.PENDING)
    )
    if through_task_id is not None and str(through_task_id) not in {str(t.pk) for t in pending}:
        task = review_task_get(tenant=tenant, task_id=through_task_id)
        raise Conflict(f"This task is already {task.status}.", extra={"status": task.status})
    for item in pending:
        item.status = ReviewStatus.CANCELLED
        item.claimed_by, item.claim_expires_at = None, None
        item.save(update_fields=["status", "claimed_by", "claim_expires_at", "updated_at"])
        audit_record(tenant=tenant, actor=user, action="review.cancelled", via=via, target=item,
                     data={"contract": str(contract.pk)})
    for item in pending:
        events.event_emit(tenant_id=tenant.id, type=events.REVIEW_CANCELLED, task=item)
    return pending


def _four_eyes_check(*, task: ReviewTask, user: AbstractBaseUser) -> None:
    if review_task_four_eyes_blocks(task=task, user=user):
        raise Forbidden(
            "Four eyes: the critical sign-off must come from a different reviewer than the legal approval.",
            extra={"reason": "four_eyes"},
        )


# --- Grants ---------------------------------------------------------------------------

def resume_permission_set(
    *,
    tenant: Tenant,
    target: ReviewTask | Contract,
    grant: bool,
    actor: AbstractBaseUser,
    via: str,
    user: AbstractBaseUser | None = None,
    group: Group | None = None,
) -> None:
    """Grant or revoke the permission to resume one task, or every task of one thread
    (a Contract), for one user or one of the tenant's team groups. Idempotent; audited.
    Only tenant admins may call this (checked by the callers' shared permission)."""
    if (user is None) == (group is None):
        raise InvalidInput("Give exactly one of user or group.", fields={"user": ["Give exactly one of user or group."]})
    # Callers look targets and holders up by tenant; checked here too, so no caller can
    # write a grant that crosses tenants.
    if target.tenant_id != tenant.id:
        raise InvalidInput("Target is not in this tenant.", fields={"target": ["Not in this tenant."]})
    membership = Membership.objects.filter(tenant=tenant, user=user).first() if user is not None else None
    if user is not None and membership is None:
        raise InvalidInput("user: not a member of this tenant.", fields={"user": ["Not a member of this tenant."]})
    refusal = resume_grant_refusal(tenant=tenant, user=user, target=target) if user is not None and grant else None
    if refusal:
        raise InvalidInput(f"user: {refusal}.", fields={"user": [f"{refusal}."]})
    if group is not None and not TenantGroup.objects.filter(tenant=tenant, group=group).exists():
        raise InvalidInput("group: not a team of this tenant.", fields={"group": ["Not a team of this tenant."]})
    user_model, group_model, codename = GRANT_MODELS[type(target)]
    permission = _permission(type(target), codename)
    with transaction.atomic():
        if user is not None:
            rows = user_model.objects.filter(tenant=tenant, content_object=target, user=user, permission=permission)
            if grant and not rows.exists():
                user_model.objects.create(
                    tenant=tenant, content_object=target, user=user, membership=membership, permission=permission
                )
        else:
            rows = group_model.objects.filter(tenant=tenant, content_object=target, group=group, permission=permission)
            if grant and not rows.exists():
                group_model.objects.create(tenant=tenant, content_object=target, group=group, permission=permission)
        if not grant:
            rows.delete()
        audit_record(
            tenant=tenant,
            actor=actor,
            action=f"{'grant' if grant else 'revoke'}.{'thread' if isinstance(target, Contract) else 'task'}",
            via=via,
            target=target,
            data={"user": user.get_username() if user else None, "group": group.name if group else None},
        )


# --- Review policies (tenant admins) ----------------------------------------------------


def review_policies_set(
    *, tenant: Tenant, changes: dict[str, dict[str, Any] | None], actor: AbstractBaseUser, via: str
) -> dict[str, Policy]:
    """Change the review policy of one or more kinds: the given fields of each kind are
    merged onto the policy in force (its own or the default) and the whole is checked;
    `None` for a kind puts it back on the defaults. All kinds or none: one invalid kind
    changes nothing, and the error names the field as `<kind>.<field>`. Applies to tasks
    created from now on; a task keeps the policy it was created under. Audited."""
    tenant_admin_required(tenant=tenant, user=actor, action="change review policies")
    unknown = sorted(set(changes) - set(ReviewKind.values))
    if unknown:
        raise InvalidInput(f"{unknown[0]}: not a review kind.", fields={name: ["Not a review kind."] for name in unknown})
    with transaction.atomic():
        # The tenant's policy rows, locked: two admins changing different fields of one
        # kind at once each merge onto what the other committed, never onto a stale read.
        current = {row.kind: row for row in ReviewPolicy.objects.select_for_update().filter(tenant=tenant)}
        effective = review_policies_effective(tenant=tenant)
        errors: dict[str, list[str]] = {}
        merged: dict[str, dict[str, Any]] = {}
        for kind, fields in changes.items():
            if fields is None:
                continue
            unknown_fields = sorted(set(fields) - set(POLICY_FIELDS))
            for name in unknown_fields:
                errors[f"{kind}.{name}"] = ["Unknown field."]
            values = {**effective[kind].values(), **{k: v for k, v in fields.items() if k in POLICY_FIELDS}}
            if effective[kind].is_default and "remind_before_due_seconds" not in fields:
                # The default reminder is a share of the due time: it follows a new one.
                values["remind_before_due_seconds"] = default_remind_before(values["due_after_seconds"]) \
                    if isinstance(values["due_after_seconds"], int) else None
            for name, messages in policy_errors(values).items():
                errors.setdefault(f"{kind}.{name}", []).extend(messages)
            merged[kind] = values
        if errors:
            first, messages = next(iter(errors.items()))
            raise InvalidInput(f"{first}: {messages[0]}", fields=errors)
        for kind, fields in changes.items():
            if fields is None:
                if kind in current:
                    current[kind].delete()
                    audit_record(tenant=tenant, actor=actor, action="policy.reset", via=via, target=tenant,
                                 data={"kind": kind})
                continue
            ReviewPolicy.objects.update_or_create(tenant=tenant, kind=kind, defaults={**merged[kind], "updated_by": actor})
            audit_record(tenant=tenant, actor=actor, action="policy.changed", via=via, target=tenant,
                         data={"kind": kind, **merged[kind]})
    return review_policies_effective(tenant=tenant)


# --- Reassign and comment ---------------------------------------------------------------


def review_task_assignee_problem(*, task: ReviewTask, membership: Membership) -> str | None:
    """Why this member may not be given the task to decide, or None. Their role must
    decide review tasks at all (not a viewer or an agent); a critical sign-off goes only
    to the tenant's sign-off role (or an admin) and never to the legal approver of the
    same contract (four eyes)."""
    if membership.role not in DECIDING_ROLES:
        return f"The role {membership.role} may not decide review tasks."
    if not membership.user.is_active:
        return "This account is deactivated."
    refusal = signoff_role_refusal(task=task, membership=membership)
    if refusal:
        return refusal[0].upper() + refusal[1:] + "."
    if task.kind == ReviewKind.SIGNOFF and review_task_four_eyes_blocks(task=task, user=membership.user):
        return "Four eyes: this member gave the legal approval the sign-off must be independent of."
    return None


def review_task_reassign(
    *,
    tenant: Tenant,
    task_id: UUID | str,
    actor: AbstractBaseUser,
    username: str,
    via: str,
    now: datetime | None = None,
) -> ReviewTask:
    """A tenant admin gives a pending task to a named member: a personal grant (so they
    may decide it, whatever their team) and a claim in their name held until the task is
    due (at least one claim lease), so the queue shows it as theirs and nobody else takes
    it meanwhile. The previous holder's claim ends; other grants stay. A member whose
    role may not decide it is refused (400 naming `user`). Audited and announced."""
    tenant_admin_required(tenant=tenant, user=actor, action="reassign review tasks")
    task = review_task_get(tenant=tenant, task_id=task_id)
    membership = membership_get_by_username(tenant=tenant, username=username)
    if membership is None:
        raise InvalidInput("user: not a member of this tenant.", fields={"user": ["Not a member of this tenant."]})
    problem = review_task_assignee_problem(task=task, membership=membership)
    if problem is not None:
        raise InvalidInput(f"user: {problem}", fields={"user": [problem]})
    now = now or timezone.now()
    assignee = membership.user
    permission = _permission(ReviewTask, RESUME_TASK_PERM)
    with transaction.atomic():
        # The row lock orders this against a resume, a claim or a timer on the same task:
        # a task decided meanwhile is not handed to anyone.
        task = ReviewTask.objects.select_for_update(of=("self",), no_key=True).select_related("claimed_by").get(
            tenant=tenant, pk=task.pk)
        if task.status != ReviewStatus.PENDING:
            raise Conflict(f"This task is already {task.status}.", extra={"status": task.status})
        previous = _claim_info(task) if task.claim_expires_at and task.claim_expires_at > now else None
        _, granted = ReviewTaskUserPermission.objects.get_or_create(
            tenant=tenant, content_object=task, user=assignee, permission=permission, defaults={"membership": membership}
        )
        lease_end = now + timedelta(seconds=tenant.claim_lease_seconds)
        task.claimed_by = assignee
        task.claim_expires_at = max(lease_end, task.due_at) if task.due_at else lease_end
        task.save(update_fields=["claimed_by", "claim_expires_at", "updated_at"])
        audit_record(tenant=tenant, actor=actor, action="review.reassigned", via=via, target=task,
                     data={"to": assignee.get_username(), "previous_claim": previous, "grant_added": granted,
                           "claim_expires_at": task.claim_expires_at.isoformat()})
        events.event_emit(tenant_id=tenant.id, type=events.REVIEW_REASSIGNED, task=task,
                          extra={"assigned_to": assignee.get_username()})
    return task


MAX_COMMENT_CHARS = 5_000


def review_comment_add(
    *, tenant: Tenant, task_id: UUID | str, user: AbstractBaseUser, body: str, via: str
) -> ReviewComment:
    """A note on a pending task from someone who may decide it (its team, a personal or
    thread grant, a tenant admin); also an audit record, with the text, and an event."""
    task = review_task_get(tenant=tenant, task_id=task_id)
    if not review_task_can_resume(task=task, user=user, membership=membership_get(tenant=tenant, user=user)):
        raise Forbidden("Only those who may decide this task may comment on it.")
    text = body.strip() if isinstance(body, str) else ""
    if not text or len(text) > MAX_COMMENT_CHARS:
        message = f"1 to {MAX_COMMENT_CHARS} characters of text."
        raise InvalidInput(f"body: {message}", fields={"body": [message]})
    with transaction.atomic():
        # Locked so a comment never lands after the decision it was meant to come before.
        task = ReviewTask.objects.select_for_update(no_key=True).get(tenant=tenant, pk=task.pk)
        if task.status != ReviewStatus.PENDING:
            raise Conflict(f"This task is already {task.status}; comments are for tasks still to decide.",
                           extra={"status": task.status})
        comment = ReviewComment.objects.create(tenant=tenant, task=task, author=user, author_username=user.get_username(),
                                               body=text)
        audit_record(tenant=tenant, actor=user, action="review.commented", via=via, target=task,
                     data={"comment": comment.pk, "body": text})
        events.event_emit(tenant_id=tenant.id, type=events.REVIEW_COMMENTED, task=task,
                          extra={"comment_id": comment.pk, "author": comment.author_username})
    return comment
