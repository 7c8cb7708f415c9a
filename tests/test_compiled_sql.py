"""config.compiled_sql gives what the ORM gives (rows, converted values, instances with
their select_related objects), for each call's own values, compiling once; on
PostgreSQL, as a statement each connection prepares once (config.postgresql.prepared)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.db.models.sql.compiler import SQLCompiler
from django.core.exceptions import ValidationError
from django.db.transaction import TransactionManagementError

from config.compiled_sql import (
    CompiledFilter,
    CompiledQuery,
    placeholder_datetime,
    placeholder_int,
    placeholder_ints,
    placeholder_str,
    placeholder_uuid,
)
from config.postgresql.prepared import PreparedStatement, statement_sql
from contracts.models import Contract
from reviews.models import ReviewTask
from tenants.models import Membership
from tests.api_flow import submit
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT, HIGH_RISK_TEXT

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]
prepared_on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql",
                                            reason="prepared statements: PostgreSQL only (SQLite runs the SQL as it is)")

MEMBER = CompiledQuery(
    lambda slug, user_id: Membership.objects.select_related("tenant").filter(tenant__slug=slug, user_id=user_id)[:1],
    slug=placeholder_str(1), user_id=placeholder_int(1),
)
TASK_COLUMNS = CompiledQuery(
    lambda tenant_id: ReviewTask.objects.filter(tenant_id=tenant_id).order_by("created_at")
    .values_list("pk", "contract_id", "payload", "created_at", "status"),
    tenant_id=placeholder_uuid(1),
)
TASK_LOCKED = CompiledQuery(
    lambda task_id: ReviewTask.objects.select_for_update(no_key=True).filter(pk=task_id)[:1],
    task_id=placeholder_uuid(1),
)


def test_instances_with_their_related_objects_as_the_orm_reads_them(acme, globex, django_assert_num_queries):
    MEMBER.fetch(slug=acme.slug, user_id=acme.admin.user.pk)  # PostgreSQL: prepared on this connection
    for world, member in [(acme, acme.reviewer), (globex, globex.admin)]:
        expected = Membership.objects.select_related("tenant").get(tenant=world.tenant, user=member.user)
        with django_assert_num_queries(1):
            [got] = MEMBER.fetch(slug=world.slug, user_id=member.user.pk)
            assert got.tenant.slug == world.slug  # came with the row: no second query
        assert (got.pk, got.role, got.user_id, got.tenant_id) == (expected.pk, expected.role, expected.user_id,
                                                                   expected.tenant_id)
        assert got.tenant.__dict__.keys() >= {"risk_threshold", "event_seq"}
        assert got.tenant.risk_threshold == expected.tenant.risk_threshold
        assert not got._state.adding and got._state.db == "default"
    assert MEMBER.fetch(slug=acme.slug, user_id=globex.admin.user.pk) == []
    assert MEMBER.first(slug="no-such-tenant", user_id=acme.reviewer.user.pk) is None
    assert MEMBER.first(slug=acme.slug, user_id=acme.admin.user.pk).role == "admin"


def test_values_come_converted_as_the_orm_converts_them(acme, globex):
    for world in (acme, acme, globex):
        submit(world, HIGH_RISK_TEXT)
    expected = list(ReviewTask.objects.filter(tenant=acme.tenant).order_by("created_at")
                    .values_list("pk", "contract_id", "payload", "created_at", "status"))
    got = TASK_COLUMNS.fetch(tenant_id=acme.tenant.pk)
    assert len(got) == 2 and got == expected
    pk, contract_id, payload, created_at, _ = got[0]
    assert isinstance(payload, dict) and created_at.tzinfo is not None and pk.version == 4
    assert len(TASK_COLUMNS.fetch(tenant_id=globex.tenant.pk)) == 1


@pytest.mark.django_db(transaction=True)  # the other thread reads committed rows
def test_compiled_once_and_used_from_any_thread(acme, monkeypatch):
    calls = []
    real = SQLCompiler.as_sql
    monkeypatch.setattr(SQLCompiler, "as_sql", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    query = CompiledQuery(lambda user_id: Membership.objects.filter(user_id=user_id).values_list("role", flat=True),
                          user_id=placeholder_int(2))
    assert query.fetch(user_id=acme.reviewer.user.pk) == ["reviewer"]
    assert query.fetch(user_id=acme.admin.user.pk) == ["admin"]
    seen = []
    def other_thread() -> None:
        seen.append(query.fetch(user_id=acme.agent.user.pk))
        connection.close()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert seen == [["agent"]]
    assert len(calls) == 1


@pytest.mark.django_db(transaction=True)  # autocommit outside the atomic block
def test_a_locking_read_needs_a_transaction(db):
    with pytest.raises(TransactionManagementError):
        TASK_LOCKED.fetch(task_id=placeholder_uuid(9))
    with transaction.atomic():
        assert TASK_LOCKED.fetch(task_id=placeholder_uuid(9)) == []


def test_a_placeholder_the_query_does_not_carry_is_refused(db):
    query = CompiledQuery(lambda user_id: Membership.objects.filter(user_id=7).values_list("pk"), user_id=placeholder_int(3))
    with pytest.raises(ValueError, match="user_id"):
        query.fetch(user_id=7)


def test_a_uuid_given_as_text_is_read_as_the_orm_reads_it(acme):
    query = CompiledQuery(lambda tenant_id: Membership.objects.filter(tenant_id=tenant_id).values_list("role", flat=True),
                          tenant_id=placeholder_uuid(4))
    assert sorted(query.fetch(tenant_id=str(acme.tenant.pk))) == sorted(
        Membership.objects.filter(tenant_id=str(acme.tenant.pk)).values_list("role", flat=True))
    with pytest.raises(ValidationError):
        query.fetch(tenant_id="not-a-uuid")
    with pytest.raises(ValidationError):
        Membership.objects.filter(tenant_id="not-a-uuid").exists()


def _statements_prepared() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


@prepared_on_postgresql
def test_on_postgresql_each_connection_prepares_once_and_then_executes(acme, globex, django_assert_num_queries):
    member = CompiledQuery(MEMBER.build, **MEMBER.placeholders)  # a statement no test has prepared yet
    with django_assert_num_queries(2) as first:
        assert member.first(slug=acme.slug, user_id=acme.admin.user.pk).role == "admin"
    prepare, execute = (q["sql"] for q in first.captured_queries)
    name = execute.split()[1].split("(")[0]
    assert prepare.startswith(f"PREPARE {name} AS SELECT") and "$2" in prepare and "%s" not in prepare
    assert name in _statements_prepared()
    assert statement_sql(execute) == member._for("default").sql
    with django_assert_num_queries(1):
        assert member.first(slug=globex.slug, user_id=globex.viewer.user.pk).role == "viewer"

    # A rollback keeps the session's statements (PREPARE is not transactional).
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        assert member.first(slug=acme.slug, user_id=acme.reviewer.user.pk).role == "reviewer"
        1 / 0
    with django_assert_num_queries(1):
        assert member.first(slug=acme.slug, user_id=acme.reviewer.user.pk).role == "reviewer"


@prepared_on_postgresql
@pytest.mark.django_db(transaction=True)  # the other thread's connection commits its own reads
def test_a_new_connection_prepares_for_itself(acme):
    assert MEMBER.first(slug=acme.slug, user_id=acme.admin.user.pk) is not None
    seen = []

    def other_thread() -> None:
        seen.append((MEMBER.first(slug=acme.slug, user_id=acme.agent.user.pk).role, _statements_prepared()))
        connection.close()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    [(role, prepared)] = seen
    assert role == "agent" and MEMBER._for("default").statement.name in prepared


def test_a_prepared_statement_takes_each_value_once_and_writes_its_constants_in():
    sql = "SELECT 1 WHERE %s LIKE 'a%%' AND %s = %s AND %s = 2"
    statement = PreparedStatement(sql, ["x", 7, "resolved", "x"], {0: "name", 1: "user", 3: "name"})
    assert statement.names == ["name", "user"]
    assert statement._prepare.endswith("AS SELECT 1 WHERE $1 LIKE 'a%%' AND $2 = %s AND $1 = 2")
    assert statement._constants == ["resolved"]
    assert statement._execute == f"EXECUTE {statement.name}(%s, %s)"
    assert statement_sql(f"EXECUTE {statement.name}('x', 2)") == sql
    assert statement_sql("SELECT 1") == "SELECT 1"
    with pytest.raises(ValueError, match="2 placeholders"):
        PreparedStatement("SELECT %s, %s", [1, 2, 3], {})


@prepared_on_postgresql
def test_constants_reach_the_planner_as_literals(acme):
    """The status in the unapplied-decisions read is what lets the planner use the
    partial index of resolved, unapplied tasks; as a parameter a generic plan could not."""
    contract = submit(acme, HIGH_RISK_TEXT)
    unapplied = CompiledQuery(
        lambda contract_id: ReviewTask.objects.filter(contract_id=contract_id, status="resolved").values_list("pk"),
        contract_id=placeholder_uuid(5),
    )
    assert unapplied.fetch(contract_id=contract.pk) == []
    name = unapplied._for("default").statement.name
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE name = %s", [name])
        [(prepared,)] = cursor.fetchall()
    assert "'resolved'" in prepared and "$1" in prepared and "$2" not in prepared


@prepared_on_postgresql
def test_behind_a_transaction_pooler_the_sql_itself_is_sent(acme, settings, django_assert_num_queries):
    """DATABASE_PREPARED_STATEMENTS=false (PgBouncer in transaction mode): no PREPARE, no
    EXECUTE; the same rows."""
    settings.DATABASE_PREPARED_STATEMENTS = False
    member = CompiledQuery(MEMBER.build, **MEMBER.placeholders)
    with django_assert_num_queries(1) as ran:
        assert member.first(slug=acme.slug, user_id=acme.admin.user.pk).role == "admin"
    [sql] = [q["sql"] for q in ran.captured_queries]
    assert sql.startswith("SELECT ") and "tenants_membership" in sql
    assert member._for("default").statement is None


# --- CompiledFilter ---------------------------------------------------------------------


def _claimed_or_titled(tenant_id, since, user_ids, title):
    """A condition with what the queue's rules have: constants, a datetime, a list, a
    subquery correlated with the task's row, and a negation."""
    titled = Contract.objects.filter(pk=OuterRef("contract_id"), tenant_id=tenant_id, title=title)
    return (Q(tenant_id=tenant_id, created_at__gte=since) & (Exists(titled) | Q(claimed_by_id__in=user_ids))
            & ~Q(kind="signoff", claimed_by__isnull=False))


CLAIMED_OR_TITLED = CompiledFilter(
    ReviewTask, _claimed_or_titled,
    tenant_id=placeholder_uuid(31), since=placeholder_datetime(31), user_ids=placeholder_ints(31),
    title=placeholder_str(31),
)


def _filter_cases(acme, globex):
    for world in (acme, acme, globex):
        submit(world, HIGH_RISK_TEXT, title="Alpha")
    submit(acme, HIGH_RISK_LARGE_PAYMENT_TEXT, title="Beta")
    claimed = ReviewTask.objects.filter(tenant=acme.tenant, contract__title="Beta").first()
    claimed.claimed_by = acme.reviewer.user
    claimed.save(update_fields=["claimed_by"])
    earliest = ReviewTask.objects.order_by("created_at").first().created_at
    return [
        dict(tenant_id=world.tenant.pk, since=since, user_ids=user_ids, title=title)
        for world in (acme, globex)
        for since in (earliest, earliest + timedelta(microseconds=1), timezone.now())
        for user_ids in ([], [acme.reviewer.user.pk], [acme.admin.user.pk, acme.reviewer.user.pk])
        for title in ("Alpha", "Beta")
    ]


def test_a_compiled_filter_selects_what_its_condition_selects(acme, globex):
    cases = _filter_cases(acme, globex)
    nonempty = 0
    for values in cases:
        expected = set(ReviewTask.objects.filter(_claimed_or_titled(**values)).values_list("pk", flat=True))
        got = set(ReviewTask.objects.filter(CLAIMED_OR_TITLED.q(**values)).values_list("pk", flat=True))
        assert got == expected, values
        nonempty += bool(expected)
    assert 0 < nonempty < len(cases)  # the cases tell rows apart


def test_a_compiled_filter_holds_in_subqueries_and_combined_querysets(acme, globex):
    for values in _filter_cases(acme, globex):
        rule, compiled = _claimed_or_titled(**values), CLAIMED_OR_TITLED.q(**values)
        # As a subquery its table is U0, and one level further down V0: the names its
        # own subqueries had before they were renamed.
        inner = ReviewTask.objects.filter(pk__in=ReviewTask.objects.filter(compiled).values("pk"))
        deeper = Contract.objects.filter(pk__in=inner.values("contract_id"))
        assert set(inner) == set(ReviewTask.objects.filter(rule))
        assert set(deeper) == set(Contract.objects.filter(pk__in=ReviewTask.objects.filter(rule).values("contract_id")))
        either = ReviewTask.objects.filter(kind="finance") | ReviewTask.objects.filter(compiled)
        both = ReviewTask.objects.filter(kind="legal") & ReviewTask.objects.filter(compiled)
        assert set(either) == set(ReviewTask.objects.filter(Q(kind="finance") | rule))
        assert set(both) == set(ReviewTask.objects.filter(Q(kind="legal") & rule))


def test_a_compiled_filter_renders_once_per_length_of_its_lists(acme, monkeypatch):
    rendered = []
    real = CompiledFilter._render
    monkeypatch.setattr(CompiledFilter, "_render", lambda self, *a: rendered.append(a[1]) or real(self, *a))
    condition = CompiledFilter(ReviewTask, _claimed_or_titled, **CLAIMED_OR_TITLED.placeholders)
    for user_ids in ([], [1], [2], [1, 2], [3, 4], []):
        list(ReviewTask.objects.filter(condition.q(tenant_id=acme.tenant.pk, since=timezone.now(), user_ids=user_ids,
                                                   title="x")))
    assert [lengths["user_ids"] for lengths in rendered] == [0, 1, 2]


def test_a_compiled_filter_refuses_joins_and_other_models(acme):
    joined = CompiledFilter(ReviewTask, lambda title: Q(contract__title=title), title=placeholder_str(32))
    with pytest.raises(ValueError, match="join"):
        joined.q(title="x")
    on_tasks = CompiledFilter(ReviewTask, lambda kind: Q(kind=kind), kind=placeholder_str(33))
    with pytest.raises(ValueError, match="reviews_reviewtask"):
        list(Contract.objects.filter(on_tasks.q(kind="legal")))
