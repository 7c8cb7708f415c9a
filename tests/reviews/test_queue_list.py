"""The review queue over the API: filters, orderings, keyset cursor pages, the detail
view, and who may see what (a second tenant sees nothing; viewers read, agents don't)."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from contracts.models import Contract
from reviews.models import ReviewTask
from reviews.selectors import QUEUE_ORDERINGS
from contracts.services import contract_cancel, contract_submit
from reviews.services import review_task_claim, review_task_resume
from tests.factories import (
    CRITICAL_RISK_TEXT,
    HIGH_RISK_LARGE_PAYMENT_TEXT,
    HIGH_RISK_TEXT,
    LARGE_PAYMENT_TEXT,
)

# The graph runs on commit (immediate task backend), so tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)

PAGE_SIZES = (1, 2, 3)


def submit(world, text: str, title: str = "MSA") -> Contract:
    contract = contract_submit(tenant=world.tenant, submitted_by=world.agent.user, title=title, text=text)
    contract.refresh_from_db()
    return contract


def task_of(contract: Contract, kind: str = "legal") -> ReviewTask:
    return ReviewTask.objects.get(contract=contract, kind=kind)


def get(member, world, path: str = "reviews/", **params):
    query = f"?{urlencode(params)}" if params else ""
    return member.client.get(world.url(f"{path}{query}"))


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def walk(member, world, *, page_size: int, **params) -> list[list[str]]:
    """Follow next_cursor from the first page to the last; returns the pages' ids."""
    pages, cursor = [], None
    while True:
        query = {**params, "page_size": page_size, **({"cursor": cursor} if cursor else {})}
        response = get(member, world, **query)
        pages.append(ids(response))
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) <= 500, "the cursor never ends"


def expected_order(tasks: list[ReviewTask], ordering: str) -> list[str]:
    """The total order the API promises: the named ordering, then the primary key
    (PostgreSQL orders UUIDs as Python does); NULL counts as the largest value (last
    ascending, first descending)."""

    def key(field: str):
        return lambda t: (getattr(t, field) is None, getattr(t, field) or 0)

    rows = sorted(tasks, key=lambda t: t.pk)
    for name in reversed(QUEUE_ORDERINGS[ordering]):
        rows.sort(key=key(name.lstrip("-")), reverse=name.startswith("-"))
    return [str(t.pk) for t in rows]


def cursor_of(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def assert_invalid(response, field: str) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"], error
    assert error["message"].startswith(f"{field}:"), error


# --- A queue with one of everything ----------------------------------------------------


@dataclass
class Queue:
    """acme's eight tasks by name; `order` is their creation order (created_at = BASE +
    i hours, updated_at runs the other way, due_at is a third, unrelated order)."""

    tasks: dict[str, ReviewTask]
    order: list[str]
    base: datetime
    contracts: dict[str, Contract]
    foreign_task: ReviewTask
    foreign_contract: Contract

    def id(self, name: str) -> str:
        return str(self.tasks[name].pk)

    def names(self, response) -> list[str]:
        by_id = {str(t.pk): name for name, t in self.tasks.items()}
        return [by_id[i] for i in ids(response)]


@pytest.fixture
def queue(acme, globex) -> Queue:
    contracts = {
        "h1": submit(acme, HIGH_RISK_TEXT),
        "h2": submit(acme, HIGH_RISK_TEXT),
        "h3": submit(acme, HIGH_RISK_TEXT),
        "h4": submit(acme, HIGH_RISK_TEXT),
        "crit": submit(acme, CRITICAL_RISK_TEXT),
        "pay": submit(acme, LARGE_PAYMENT_TEXT),
        "both": submit(acme, HIGH_RISK_LARGE_PAYMENT_TEXT),
    }
    tasks = {
        "h1": task_of(contracts["h1"]),
        "h2": task_of(contracts["h2"]),
        "h3": task_of(contracts["h3"]),
        "h4": task_of(contracts["h4"]),
        "crit": task_of(contracts["crit"]),
        "pay": task_of(contracts["pay"], "finance"),
        "both_legal": task_of(contracts["both"]),
        "both_finance": task_of(contracts["both"], "finance"),
    }
    assert tasks["crit"].risk_score > 0.9
    assert tasks["pay"].risk_score == 0.0
    assert {tasks[n].risk_score for n in ("h1", "h2", "h3", "h4", "both_legal", "both_finance")} == {0.8245}

    lease = acme.tenant.claim_lease_seconds
    review_task_resume(tenant=acme.tenant, task_id=tasks["h3"].pk, user=acme.reviewer.user, data={"decision": "approve"})
    contract_cancel(tenant=acme.tenant, contract_id=tasks["h4"].contract_id, user=acme.admin.user, via="api")
    review_task_claim(tenant=acme.tenant, task_id=tasks["h1"].pk, user=acme.reviewer.user)
    review_task_claim(tenant=acme.tenant, task_id=tasks["both_finance"].pk, user=acme.reviewer2.user)
    # A claim taken long enough ago to have expired: it counts as no claim at all.
    review_task_claim(tenant=acme.tenant, task_id=tasks["h2"].pk, user=acme.senior.user,
                      now=timezone.now() - timedelta(seconds=lease + 60))

    # Timestamps set last (update() bypasses auto_now), so later writes cannot move them.
    order = ["h1", "pay", "h2", "crit", "both_legal", "h3", "both_finance", "h4"]
    due_order = ["crit", "h4", "both_finance", "h1", "pay", "h3", "both_legal", "h2"]
    base = timezone.now().replace(microsecond=0) - timedelta(days=30)
    for i, name in enumerate(order):
        ReviewTask.objects.filter(pk=tasks[name].pk).update(
            created_at=base + timedelta(hours=i),
            updated_at=base + timedelta(hours=len(order) - 1 - i, minutes=30),
            due_at=base + timedelta(days=2, hours=due_order.index(name)),
        )
    for task in tasks.values():
        task.refresh_from_db()
    assert (tasks["h3"].status, tasks["h4"].status) == ("resolved", "cancelled")

    foreign_contract = submit(globex, HIGH_RISK_TEXT)
    return Queue(tasks=tasks, order=order, base=base, contracts=contracts,
                 foreign_task=task_of(foreign_contract), foreign_contract=foreign_contract)


# --- Filters ----------------------------------------------------------------------------


def test_unfiltered_queue_lists_every_task_of_the_tenant_and_none_of_another(acme, globex, queue):
    listed = queue.names(get(acme.reviewer, acme))
    assert sorted(listed) == sorted(queue.tasks)
    assert ids(get(globex.reviewer, globex)) == [str(queue.foreign_task.pk)]


FILTER_CASES = [
    ({"status": "pending"}, {"h1", "h2", "crit", "pay", "both_legal", "both_finance"}),
    ({"status": "resolved"}, {"h3"}),
    ({"status": "cancelled"}, {"h4"}),
    ({"kind": "finance"}, {"pay", "both_finance"}),
    ({"kind": "legal"}, {"h1", "h2", "h3", "h4", "crit", "both_legal"}),
    ({"kind": "signoff"}, set()),
    ({"risk_min": 0.9}, {"crit"}),
    ({"risk_max": 0.5}, {"pay"}),
    # Both bounds are inclusive: a range of one value keeps the ties on it.
    ({"risk_min": 0.8245, "risk_max": 0.8245}, {"h1", "h2", "h3", "h4", "both_legal", "both_finance"}),
    ({"risk_min": 0.0, "risk_max": 0.0}, {"pay"}),
    ({"risk_min": 0.95}, set()),
    ({"risk_min": 0.9, "risk_max": 0.1}, set()),
    ({"status": "pending", "kind": "legal", "risk_max": 0.85, "assignee": "none"}, {"h2", "both_legal"}),
]


def test_status_kind_and_risk_filters(acme, queue):
    for params, expected in FILTER_CASES:
        assert set(queue.names(get(acme.reviewer, acme, **params))) == expected, params


def test_assignee_me_is_the_callers_live_claims(acme, queue):
    assert queue.names(get(acme.reviewer, acme, assignee="me")) == ["h1"]
    assert queue.names(get(acme.reviewer2, acme, assignee="me")) == ["both_finance"]
    # The senior's claim on h2 has expired: it is nobody's any more.
    assert queue.names(get(acme.senior, acme, assignee="me")) == []
    assert queue.names(get(acme.viewer, acme, assignee="me")) == []


def test_assignee_username_lists_that_members_live_claims(acme, globex, queue):
    assert queue.names(get(acme.viewer, acme, assignee="acme-reviewer")) == ["h1"]
    assert queue.names(get(acme.viewer, acme, assignee="acme-reviewer2")) == ["both_finance"]
    assert queue.names(get(acme.viewer, acme, assignee="acme-senior")) == []
    assert queue.names(get(acme.viewer, acme, assignee="nobody-by-that-name")) == []
    assert queue.names(get(acme.viewer, acme, assignee="globex-reviewer")) == []


def test_assignee_none_includes_unclaimed_and_expired_claims(acme, queue):
    listed = set(queue.names(get(acme.reviewer, acme, assignee="none", status="pending")))
    assert listed == {"h2", "crit", "pay", "both_legal"}
    # The expired claim is hidden in the output too, not only in the filter.
    [row] = [r for r in get(acme.reviewer, acme, assignee="none").json()["results"] if r["id"] == queue.id("h2")]
    assert (row["claimed_by"], row["claim_expires_at"]) == (None, None)
    live = [r for r in get(acme.reviewer, acme, assignee="me").json()["results"]]
    assert live[0]["claimed_by"] == "acme-reviewer" and live[0]["claim_expires_at"] is not None


def test_contract_filter(acme, queue):
    both = str(queue.contracts["both"].pk)
    assert set(queue.names(get(acme.reviewer, acme, contract=both))) == {"both_legal", "both_finance"}
    # Another tenant's contract id filters to nothing, exactly like an unknown one.
    assert ids(get(acme.reviewer, acme, contract=str(queue.foreign_contract.pk))) == []
    assert ids(get(acme.reviewer, acme, contract=str(uuid.uuid4()))) == []


def test_created_range_is_half_open(acme, queue):
    """created_after includes its instant, created_before excludes its own."""
    at = lambda hours: (queue.base + timedelta(hours=hours)).isoformat()  # noqa: E731
    assert queue.names(get(acme.reviewer, acme, ordering="age", created_after=at(5))) == queue.order[5:]
    assert queue.names(get(acme.reviewer, acme, ordering="age", created_before=at(3))) == queue.order[:3]
    assert queue.names(get(acme.reviewer, acme, ordering="age", created_after=at(2), created_before=at(5))) == queue.order[2:5]
    assert ids(get(acme.reviewer, acme, created_after=at(8))) == []


def test_updated_range_is_half_open(acme, queue):
    at = lambda hours: (queue.base + timedelta(hours=hours, minutes=30)).isoformat()  # noqa: E731
    # updated_at runs against creation order: the last created was updated first.
    newest_updated = set(queue.order[:3])
    assert set(queue.names(get(acme.reviewer, acme, updated_after=at(5)))) == newest_updated
    assert set(queue.names(get(acme.reviewer, acme, updated_before=at(1)))) == {queue.order[-1]}
    assert set(queue.names(get(acme.reviewer, acme, updated_after=at(1), updated_before=at(3)))) == set(queue.order[5:7])


def test_actionable_lists_only_pending_tasks_the_caller_may_decide_now(acme, queue):
    pending = {"h1", "h2", "crit", "pay", "both_legal", "both_finance"}
    # Without a status filter too: resolved (h3) and cancelled (h4) tasks are never
    # actionable, nor a task under someone else's live claim (h1: reviewer,
    # both_finance: reviewer2); an expired claim (h2) is no claim.
    assert set(queue.names(get(acme.admin, acme, actionable="true"))) == pending - {"h1", "both_finance"}
    # A reviewer outside the finance team cannot act on finance tasks.
    assert set(queue.names(get(acme.reviewer, acme, actionable="true"))) == pending - {"pay", "both_finance"}
    assert set(queue.names(get(acme.reviewer2, acme, actionable="true"))) == pending - {"h1"}
    assert queue.names(get(acme.viewer, acme, actionable="true")) == []


def test_actionable_leaves_out_the_sign_off_of_the_first_signer(acme, globex):
    contract = submit(acme, CRITICAL_RISK_TEXT)
    review_task_resume(tenant=acme.tenant, task_id=task_of(contract).pk, user=acme.senior.user,
                       data={"decision": "approve"})
    signoff = str(task_of(contract, "signoff").pk)
    assert signoff not in ids(get(acme.senior, acme, actionable="true"))  # four eyes: not theirs to give
    assert signoff in ids(get(acme.admin, acme, actionable="true"))
    assert signoff in ids(get(acme.senior, acme, status="pending"))  # still visible in the queue
    # Another tenant's member sees none of it, actionable or not.
    assert ids(get(globex.admin, globex, actionable="true")) == []


BAD_PARAMETERS = [
    ({"status": "approved"}, "status"),
    ({"kind": "tax"}, "kind"),
    ({"risk_min": 1.5}, "risk_min"),
    ({"risk_max": -0.1}, "risk_max"),
    ({"risk_min": "high"}, "risk_min"),
    ({"contract": "not-a-uuid"}, "contract"),
    ({"created_after": "yesterday"}, "created_after"),
    ({"updated_before": "2024-02-30T00:00:00Z"}, "updated_before"),
    ({"ordering": "random"}, "ordering"),
    ({"actionable": "perhaps"}, "actionable"),
    ({"bogus": "1"}, "bogus"),
    ({"tenant": "globex"}, "tenant"),
]


def test_bad_or_unknown_query_parameters_are_400_naming_them(acme, queue):
    for params, field in BAD_PARAMETERS:
        assert_invalid(get(acme.reviewer, acme, **params), field)


# --- Orderings ------------------------------------------------------------------------


def test_default_ordering_is_risk_highest_first_then_oldest(acme, queue):
    listed = queue.names(get(acme.reviewer, acme))
    assert listed == queue.names(get(acme.reviewer, acme, ordering="risk"))
    assert listed[0] == "crit" and listed[-1] == "pay"
    ties = [name for name in listed if queue.tasks[name].risk_score == 0.8245]
    assert ties == [name for name in queue.order if queue.tasks[name].risk_score == 0.8245]


ORDERINGS = {
    "risk": ["crit", "h1", "h2", "both_legal", "h3", "both_finance", "h4", "pay"],
    "-risk": ["pay", "h4", "both_finance", "h3", "both_legal", "h2", "h1", "crit"],
    "age": ["h1", "pay", "h2", "crit", "both_legal", "h3", "both_finance", "h4"],
    "-age": ["h4", "both_finance", "h3", "both_legal", "crit", "h2", "pay", "h1"],
    "deadline": ["crit", "h4", "both_finance", "h1", "pay", "h3", "both_legal", "h2"],
    "-deadline": ["h2", "both_legal", "h3", "pay", "h1", "both_finance", "h4", "crit"],
    # Priority is half the risk score (nothing here is due soon or escalated); ties by due date.
    "priority": ["crit", "h4", "both_finance", "h1", "h3", "both_legal", "h2", "pay"],
    "-priority": ["pay", "h2", "both_legal", "h3", "h1", "both_finance", "h4", "crit"],
}


def test_orderings(acme, queue):
    assert set(ORDERINGS) == set(QUEUE_ORDERINGS)
    name_of = {str(t.pk): name for name, t in queue.tasks.items()}
    for ordering, expected in ORDERINGS.items():
        assert queue.names(get(acme.reviewer, acme, ordering=ordering)) == expected, ordering
        # The helper the cursor tests check against agrees with the hand-written order.
        assert [name_of[i] for i in expected_order(list(queue.tasks.values()), ordering)] == expected, ordering


# --- Keyset pages -------------------------------------------------------------------------


@pytest.fixture
def ties(acme) -> list[ReviewTask]:
    """Thirteen tasks with the same risk score; groups of them also share created_at, and
    all share due_at, so only the primary key tells them apart."""
    for i in range(13):
        submit(acme, HIGH_RISK_TEXT, title=f"MSA {i}")
    tasks = list(ReviewTask.objects.filter(tenant=acme.tenant))
    assert len(tasks) == 13 and {t.risk_score for t in tasks} == {0.8245}
    base = timezone.now() - timedelta(days=1)
    for i, task in enumerate(tasks):
        ReviewTask.objects.filter(pk=task.pk).update(created_at=base + timedelta(seconds=i // 4), due_at=base + timedelta(days=1))
    return list(ReviewTask.objects.filter(tenant=acme.tenant))


def test_cursor_walks_every_tied_task_exactly_once(acme, ties):
    for ordering in sorted(QUEUE_ORDERINGS):
        for page_size in PAGE_SIZES:
            case = f"ordering={ordering} page_size={page_size}"
            pages = walk(acme.reviewer, acme, page_size=page_size, ordering=ordering)
            walked = [task_id for page in pages for task_id in page]
            assert len(walked) == len(set(walked)), f"{case}: a task came twice"
            assert sorted(walked) == sorted(str(t.pk) for t in ties), f"{case}: a task was skipped"
            assert walked == expected_order(ties, ordering), case
            assert all(len(page) == page_size for page in pages[:-1]), case
            assert 1 <= len(pages[-1]) <= page_size, f"{case}: a trailing empty page"


def test_cursor_pages_respect_filters(acme, ties):
    for task in ties[:5]:
        review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user)
    pages = walk(acme.reviewer, acme, page_size=2, assignee="none", ordering="risk")
    walked = [task_id for page in pages for task_id in page]
    assert walked == expected_order(ties[5:], "risk")


def test_cursor_walks_tasks_without_a_deadline_too(acme, ties):
    """Tasks created before due_at existed (migration reviews 0003) have none. Regression:
    the keyset condition skipped NULLs, so the walk lost them (deadline: NULLS LAST) or
    lost everything after them (-deadline: NULLS FIRST)."""
    ReviewTask.objects.filter(pk__in=[t.pk for t in ties[::3]]).update(due_at=None)
    ties = list(ReviewTask.objects.filter(tenant=acme.tenant))
    for ordering in ("deadline", "-deadline"):
        expected = expected_order(ties, ordering)
        nulls = {str(t.pk) for t in ties if t.due_at is None}
        assert (set(expected[-len(nulls):]) if ordering == "deadline" else set(expected[:len(nulls)])) == nulls
        for page_size in PAGE_SIZES:
            walked = [i for page in walk(acme.reviewer, acme, page_size=page_size, ordering=ordering) for i in page]
            assert walked == expected, f"ordering={ordering} page_size={page_size}"


def test_page_size_over_100_or_under_1_is_400_naming_page_size(acme, queue):
    for page_size in (101, 1000, 0, -1, "ten"):
        assert_invalid(get(acme.reviewer, acme, page_size=page_size), "page_size")
    assert len(ids(get(acme.reviewer, acme, page_size=100))) == len(queue.tasks)


MALFORMED_CURSORS = [
        "not a cursor!",
    "%%%%",
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    cursor_of({"risk_score": 0.5}),
    cursor_of([0.5]),  # too few values for the ordering
    cursor_of([0.5, "2030-01-01T00:00:00+00:00", str(uuid.uuid4()), "extra"]),
    cursor_of(["high", "2030-01-01T00:00:00+00:00", str(uuid.uuid4())]),
    cursor_of([0.5, "not a date", str(uuid.uuid4())]),
    cursor_of([0.5, "2030-01-01T00:00:00+00:00", "not-a-uuid"]),
    # Regression: a non-string where a date belongs raised TypeError (a 500).
    cursor_of([0.5, 12345, str(uuid.uuid4())]),
    cursor_of([0.5, ["2030-01-01"], str(uuid.uuid4())]),
    cursor_of([0.5, {"at": 1}, str(uuid.uuid4())]),
    cursor_of([[0.5], "2030-01-01T00:00:00+00:00", str(uuid.uuid4())]),
]


def test_malformed_cursor_is_400_naming_cursor(acme, queue):
    for cursor in MALFORMED_CURSORS:
        assert_invalid(get(acme.reviewer, acme, cursor=cursor), "cursor")


def replay_cursor(world, *, made_for: str, replayed_with: str):
    first = get(world.reviewer, world, ordering=made_for, page_size=2).json()
    assert first["next_cursor"]
    return get(world.reviewer, world, ordering=replayed_with, cursor=first["next_cursor"])


def test_cursor_of_one_ordering_replayed_with_another_is_400(acme, queue):
    # A date where a float belongs, two values where three belong, and (regression: a
    # TypeError, 500) a float where a date belongs.
    assert_invalid(replay_cursor(acme, made_for="deadline", replayed_with="risk"), "cursor")
    assert_invalid(replay_cursor(acme, made_for="age", replayed_with="risk"), "cursor")
    assert_invalid(replay_cursor(acme, made_for="risk", replayed_with="deadline"), "cursor")


# --- Detail -----------------------------------------------------------------------------


LONG_TEXT = HIGH_RISK_TEXT + " " + "Boilerplate clause. " * 200


def test_detail_has_everything_a_reviewer_needs(acme):
    contract = submit(acme, LONG_TEXT)
    task = task_of(contract)
    review_task_claim(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user)

    response = get(acme.reviewer, acme, f"reviews/{task.pk}/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == str(task.pk) and body["contract"] == str(contract.pk)
    assert body["kind"] == "legal" and body["status"] == "pending"
    assert body["payload"] == task.payload
    assert body["payload"]["risk_score"] == pytest.approx(0.8245)
    assert len(body["contract_excerpt"]) == 1000 and LONG_TEXT.startswith(body["contract_excerpt"])
    assert {f["rule"] for f in body["findings"]} == {"uncapped_liability", "broad_indemnification", "unilateral_termination"}
    assert body["findings"] == contract.findings
    assert body["response_schema"]["properties"]["decision"]["enum"] == ["approve", "reject", "amend"]
    assert body["decision_history"] == []
    assert [h["action"] for h in body["history"]] == ["review.claimed"]
    assert body["history"][0]["actor"] == "acme-reviewer"
    assert body["claimed_by"] == "acme-reviewer"
    assert body["can_resume"] is True


def test_detail_after_the_decision_shows_it_and_can_no_longer_be_resumed(acme):
    contract = submit(acme, HIGH_RISK_TEXT)
    task = task_of(contract)
    review_task_resume(tenant=acme.tenant, task_id=task.pk, user=acme.senior.user, data={"decision": "reject", "comment": "no"})

    body = get(acme.admin, acme, f"reviews/{task.pk}/").json()
    assert body["status"] == "resolved" and body["contract_status"] == "rejected"
    assert body["decision"]["decision"] == "reject" and body["decided_by"] == "acme-senior"
    assert [(h["kind"], h["decision"], h["decided_by_username"]) for h in body["decision_history"]] == [
        ("legal", "reject", "acme-senior")
    ]
    assert [h["action"] for h in body["history"]] == ["review.resolved"]
    assert body["applied_at"] is not None
    assert body["can_resume"] is False  # not even for an admin: nothing is pending


CAN_RESUME = [
    ("admin", "legal", True),
    ("admin", "finance", True),
    ("reviewer", "legal", True),
    ("reviewer", "finance", False),  # not in the finance team
    ("reviewer2", "finance", True),
    ("senior", "legal", True),
    ("senior", "finance", False),
    ("viewer", "legal", False),
    ("viewer", "finance", False),
]


def test_detail_can_resume_follows_role_and_routing(acme):
    contract = submit(acme, HIGH_RISK_LARGE_PAYMENT_TEXT)
    for member, kind, can_resume in CAN_RESUME:
        response = get(getattr(acme, member), acme, f"reviews/{task_of(contract, kind).pk}/")
        assert response.status_code == 200
        assert response.json()["can_resume"] is can_resume, (member, kind)


# --- Isolation and permissions -------------------------------------------------------------


def test_another_tenants_task_is_404_with_the_same_body_as_a_missing_one(acme, globex):
    task = task_of(submit(acme, HIGH_RISK_TEXT))
    missing = get(globex.admin, globex, f"reviews/{uuid.uuid4()}/")
    foreign = get(globex.admin, globex, f"reviews/{task.pk}/")
    assert missing.status_code == foreign.status_code == 404
    assert foreign.json() == missing.json() == {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}
    # Through acme's URL the globex admin is not a member: the same 404 again.
    through_acme = get(globex.admin, acme, f"reviews/{task.pk}/")
    assert (through_acme.status_code, through_acme.json()) == (404, missing.json())
    assert get(globex.admin, acme).status_code == 404
    # And another tenant's task cannot be acted on either.
    for action in ("resume", "claim", "release", "cancel"):
        response = globex.admin.client.post(globex.url(f"reviews/{task.pk}/{action}/"), {"decision": "approve"}, format="json")
        assert (response.status_code, response.json()) == (404, missing.json()), action
    assert ReviewTask.objects.get(pk=task.pk).status == "pending"


def test_viewer_may_read_the_queue_but_not_act(acme):
    task = task_of(submit(acme, HIGH_RISK_TEXT))
    assert ids(get(acme.viewer, acme)) == [str(task.pk)]
    assert get(acme.viewer, acme, f"reviews/{task.pk}/").json()["can_resume"] is False
    for action in ("resume", "claim", "cancel"):
        response = acme.viewer.client.post(acme.url(f"reviews/{task.pk}/{action}/"), {"decision": "approve"}, format="json")
        assert response.status_code == 403, action
        assert response.json()["error"]["code"] == "forbidden"
    task.refresh_from_db()
    assert (task.status, task.claimed_by_id) == ("pending", None)


def test_agent_and_anonymous_may_not_read_the_queue(acme, anon):
    task = task_of(submit(acme, HIGH_RISK_TEXT))
    for path in ("reviews/", f"reviews/{task.pk}/"):
        response = get(acme.agent, acme, path)
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
        response = anon.get(acme.url(path))
        assert response.status_code == 401 and "error" in response.json()


@pytest.mark.embedded
def test_a_page_renders_as_the_list_serializer_renders_it_and_lets_go_of_its_rows(acme):
    import gc
    import weakref

    from config.pagination import serialized_rows
    from reviews.apis import ReviewTaskOutputSerializer

    for text in (HIGH_RISK_TEXT, HIGH_RISK_TEXT, HIGH_RISK_TEXT):
        submit(acme, text)
    [decided, claimed, _] = ReviewTask.objects.order_by("created_at")
    review_task_resume(tenant=acme.tenant, task_id=decided.pk, user=acme.reviewer.user, data={"decision": "approve"})
    review_task_claim(tenant=acme.tenant, task_id=claimed.pk, user=acme.reviewer2.user)
    rows = list(ReviewTask.objects.select_related("contract", "claimed_by", "decided_by").order_by("created_at"))
    context = {"now": timezone.now()}
    assert serialized_rows(ReviewTaskOutputSerializer, rows, **context) == \
        ReviewTaskOutputSerializer(rows, many=True, context=dict(context)).data

    # Freed with the last reference, without waiting for the garbage collector (which
    # the list serializer above, a reference cycle holding them, does need).
    gc.collect()
    gc.disable()
    try:
        refs = [weakref.ref(row) for row in rows]
        data = serialized_rows(ReviewTaskOutputSerializer, rows, **context)
        del rows
        assert len(data) == 3 and all(ref() is None for ref in refs)
    finally:
        gc.enable()
