"""A queryset's SQL, compiled once per process, run with each call's own values.

Django compiles a queryset anew every time it runs: it rebuilds the WHERE tree, the
joins and the SELECT list, then renders them. For the queries every request and every
run makes (the API token, the membership, the locked contract, the resume permission
check with its four correlated subqueries) that costs more CPU than PostgreSQL spends
running them: the permission check took 4.6 ms to compile and well under 1 ms to run.
Here the queryset is built once from placeholder values, its SQL, parameters and
compiler state kept, and each call swaps the placeholders for its own values: the same
rule (the same builder), the same rows and model instances as the ORM's, without
compiling it again. On PostgreSQL the SQL is also a prepared statement of each
connection (config.postgresql.prepared), so the database does not plan it again either.

Only for querysets read as a whole (a list, no further filtering): slice in the
builder (`[:1]`) what should be limited. A condition that goes into querysets built
anew each time (a list page's filters, its cursor, its ordering) is a CompiledFilter:
its WHERE fragment is rendered once and added to any queryset of its model.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from django.db import connections
from django.db.models import BooleanField, DateTimeField, Expression, Model, Q, QuerySet, UUIDField
from django.db.models.sql.query import Query
from django.db.transaction import TransactionManagementError

from config.postgresql.prepared import PreparedStatement, prepared_statements_on

_UUID_BASE = 0x5E471E1_0000_0000_0000_0000_0000_0000
_UUID_FIELD = UUIDField()


def placeholder_uuid(n: int) -> uuid.UUID:
    return uuid.UUID(int=_UUID_BASE + n)


def placeholder_int(n: int) -> int:
    return -7_000_000_000_000 - n


def placeholder_str(n: int) -> str:
    return f"\x1fplaceholder-{n}\x1f"


def placeholder_datetime(n: int) -> datetime:
    return datetime(1901, 2, 3, 4, 5, 6, n, tzinfo=timezone.utc)


@dataclass(frozen=True)
class placeholder_ints:  # noqa: N801 - used as the other placeholder_* are
    """A list of ints (CompiledFilter only): compiled once for each length it comes in."""

    n: int

    def values(self, length: int) -> list[int]:
        return [placeholder_int(1000 * self.n + i) for i in range(length)]


# What SQLCompiler.setup_query leaves on the compiler and the iterables read after
# execute_sql: which columns are which model's fields, and how to convert them.
_COMPILER_STATE = ("select", "klass_info", "annotation_col_map", "col_count", "has_extra_select")


@dataclass(frozen=True)
class _Compiled:
    template: QuerySet
    sql: str
    params: tuple
    slots: dict[int, str]
    state: dict[str, Any]
    statement: PreparedStatement | None


class CompiledQuery:
    def __init__(self, build: Callable[..., QuerySet], **placeholders: Any) -> None:
        """`build(**values)` returns the queryset; `placeholders` give one value per
        keyword, of the right type and found nowhere else in the query (see the
        placeholder_* functions)."""
        self.build = build
        self.placeholders = placeholders
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def fetch(self, *, using: str = "default", **values: Any) -> list:
        """What the queryset yields (tuples for values_list, dicts for values, model
        instances with their select_related objects), as list(queryset) would."""
        return list(self._queryset(using, values))

    def first(self, *, using: str = "default", **values: Any) -> Any:
        """The first of fetch(), or None: for a builder sliced to one row (`[:1]`)."""
        return next(iter(self._queryset(using, values)), None)

    def _queryset(self, using: str, values: dict[str, Any]) -> QuerySet:
        compiled = self._for(using)
        given = {name: self._prepared(using, self._typed(name, values[name])) for name in self.placeholders}
        if compiled.statement is not None:
            bound = [given[name] for name in compiled.statement.names]
        else:
            bound = list(compiled.params)
            for index, name in compiled.slots.items():
                bound[index] = given[name]
        queryset = compiled.template._chain()
        connection = connections[using]
        if queryset.query.select_for_update and connection.get_autocommit():
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        # A compiler of this thread's connection, given the state the first compilation
        # produced and its SQL with this call's values; the queryset's own iterable then
        # executes it and turns rows into tuples or instances exactly as it always does.
        compiler = Query.get_compiler(queryset.query, using=using)
        compiler.__dict__.update(compiled.state)
        sql = compiled.statement.sql(connection) if compiled.statement is not None else compiled.sql
        compiler.as_sql = lambda *args, **kwargs: (sql, bound)
        queryset.query.get_compiler = lambda *args, **kwargs: compiler
        return queryset

    def _for(self, using: str) -> _Compiled:
        key = f"{using}:{connections[using].vendor}"
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(key) or self._compile(using)
                self._compiled[key] = compiled
        return compiled

    def _compile(self, alias: str) -> _Compiled:
        template = self.build(**self.placeholders).using(alias)
        compiler = template.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        prepared = {name: self._prepared(alias, value) for name, value in self.placeholders.items()}
        slots = {i: name for i, param in enumerate(params) for name, value in prepared.items() if param == value}
        missing = set(self.placeholders) - set(slots.values())
        if missing:
            raise ValueError(f"placeholders not found in the compiled query: {sorted(missing)}")
        state = {name: getattr(compiler, name) for name in _COMPILER_STATE}
        statement = PreparedStatement(sql, params, slots) if prepared_statements_on(connections[alias]) else None
        return _Compiled(template=template, sql=sql, params=tuple(params), slots=slots, state=state, statement=statement)

    def _typed(self, name: str, value: Any) -> Any:
        """A UUID given as text is checked and converted as the ORM's filter would (a
        malformed one is the same ValidationError), not sent to the database as text."""
        if isinstance(self.placeholders[name], uuid.UUID) and value is not None and not isinstance(value, uuid.UUID):
            return _UUID_FIELD.to_python(value)
        return value

    @staticmethod
    def _prepared(alias: str, value: Any) -> Any:
        """A value as the backend receives it, so placeholders can be found among the
        compiled parameters."""
        return _db_value(alias, value)


# --- Conditions -----------------------------------------------------------------------

_DATETIME_FIELD = DateTimeField()
# An alias Django gives a table in a subquery (U0, V1, AA0), where the fragment names it.
_SUBQUERY_ALIAS = re.compile(r'(?<=" )([A-Z]+\d+)\b')


@dataclass(frozen=True)
class _Fragment:
    sql: str
    params: tuple
    # Parameter position -> (placeholder name, index in its list or None).
    slots: dict[int, tuple[str, int | None]]


class CompiledFilter:
    def __init__(self, model: type[Model], build: Callable[..., Q], **placeholders: Any) -> None:
        """`build(**values)` returns a condition on `model`'s own columns (and subqueries
        correlated with them; no joins), `placeholders` one value per keyword as for
        CompiledQuery, or placeholder_ints for a list."""
        self.model = model
        self.build = build
        self.placeholders = placeholders
        self._fragments: dict[tuple, _Fragment] = {}
        self._lock = threading.Lock()

    def q(self, *, using: str = "default", **values: Any) -> Q:
        """The condition for these values, for `.filter()` of a queryset of the model read
        from `using`. Not for `.exclude()`: the ORM makes a negated condition NULL-safe
        as it builds it, so a negation belongs inside `build`."""
        shape = tuple(len(values[name]) if isinstance(p, placeholder_ints) else None
                      for name, p in self.placeholders.items())
        key = (using, connections[using].vendor, shape)
        fragment = self._fragments.get(key)
        if fragment is None:
            with self._lock:
                fragment = self._fragments.get(key) or self._render(using, dict(zip(self.placeholders, shape)))
                self._fragments[key] = fragment
        bound = list(fragment.params)
        for index, (name, position) in fragment.slots.items():
            value = values[name] if position is None else values[name][position]
            bound[index] = _db_value(using, value)
        return Q(_RenderedCondition(fragment.sql, tuple(bound), self.model._meta.db_table))

    def _render(self, alias: str, lengths: dict[str, int | None]) -> _Fragment:
        given = {name: p.values(lengths[name]) if isinstance(p, placeholder_ints) else p
                 for name, p in self.placeholders.items()}
        query = self.model._default_manager.using(alias).filter(self.build(**given)).query
        compiler = query.get_compiler(using=alias)
        sql, params = compiler.compile(query.where)
        if any(query.alias_refcount[a] for a in list(query.alias_map)[1:]):
            raise ValueError("a compiled filter may not join other tables; use a subquery")
        # Its subqueries' own aliases get a prefix Django never gives one, so the
        # fragment can go into a query of any depth (where U0 may be the outer table).
        for inner in set(_SUBQUERY_ALIAS.findall(sql)):
            sql = re.sub(rf'(?<![\w"]){inner}(?=[."\s)]|$)', f"hitl_{inner.lower()}", sql)
        slots: dict[int, tuple[str, int | None]] = {}
        for name, value in given.items():
            for position, one in (enumerate(value) if isinstance(value, list) else [(None, value)]):
                found = [i for i, param in enumerate(params) if param == _db_value(alias, one)]
                if not found:
                    raise ValueError(f"placeholder {name!r} not found in the compiled condition")
                slots.update({i: (name, position) for i in found})
        return _Fragment(sql=sql, params=tuple(params), slots=slots)


def _db_value(alias: str, value: Any) -> Any:
    """A value as the backend receives it in a filter: UUIDs and datetimes as strings
    where the database has no type of its own for them (SQLite)."""
    connection = connections[alias]
    if isinstance(value, uuid.UUID) and not connection.features.has_native_uuid_field:
        return value.hex
    if isinstance(value, datetime):
        return _DATETIME_FIELD.get_db_prep_value(value, connection)
    return value


class _RenderedCondition(Expression):
    """A CompiledFilter's SQL in a query: its references to the model's table point at
    whatever alias the table has in the query it is compiled in (the table's name, or
    U0 once the queryset is a subquery of another)."""

    conditional = True
    output_field = BooleanField()

    def __init__(self, sql: str, params: tuple, table: str) -> None:
        super().__init__()
        self.sql, self.params, self.table = sql, params, table

    def as_sql(self, compiler, connection):
        alias = compiler.query.base_table
        if compiler.query.alias_map[alias].table_name != self.table:
            raise ValueError(f"a condition on {self.table} in a query of {compiler.query.alias_map[alias].table_name}")
        outer = compiler.quote_name_unless_alias(alias)
        qualified = '"%s".' % self.table
        return "(%s)" % self.sql.replace(qualified, outer + "."), self.params
