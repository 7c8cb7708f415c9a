"""The ORM's create and save(update_fields=...), for the rows every contract writes, with
their SQL rendered once per process.

Each contract's run writes a dozen rows through the ORM (the contract at every pass,
its review task, queue events, audit records). Model.save and QuerySet.create rebuild
and render their INSERT or UPDATE every time: 0.41 ms of CPU for a contract's outcome
save, against 0.22 ms for the same UPDATE sent as SQL, of which the round trip is most.
Here each statement is rendered once, from the model's own fields, and each call only
converts its values with those fields (field.pre_save and get_db_prep_save, as the
ORM does: auto_now times, JSON, foreign keys). On PostgreSQL it is also a prepared
statement of each connection (config.postgresql.prepared).

What the ORM would do besides is not done: no check of unsaved related objects, and no
pre_save/post_save signals. A model with receivers for them is refused, unless its
caller says it does their work itself (`signals_done`). Database defaults and columns
the database computes (but an auto-increment key) are refused too.
"""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar

from django.db import DatabaseError, connections
from django.db.models import NOT_PROVIDED, Field, Model
from django.db.models.signals import post_save, pre_save

from config.postgresql.prepared import PreparedStatement, prepared_statements_on

M = TypeVar("M", bound=Model)


class _Statements:
    """One statement's SQL per database alias, and its prepared form on PostgreSQL."""

    def __init__(self, model: type[Model], render, *, signals_done: bool) -> None:
        self._model, self._render, self._signals_done = model, render, signals_done
        self._by_alias: dict[str, tuple[str, PreparedStatement | None]] = {}
        self._lock = threading.Lock()

    def sql(self, using: str) -> str:
        connection = connections[using]
        key = f"{using}:{connection.vendor}"  # tests point an alias elsewhere
        cached = self._by_alias.get(key)
        if cached is None:
            # Checked at first use: receivers connect when the apps are ready.
            if not self._signals_done and (pre_save.has_listeners(self._model) or post_save.has_listeners(self._model)):
                raise ValueError(f"{self._model._meta.label} has save signal receivers, which this would skip")
            with self._lock:
                sql, count = self._render(connection)
                statement = (PreparedStatement(sql, [None] * count, {i: str(i) for i in range(count)})
                             if prepared_statements_on(connection) else None)
                cached = self._by_alias[key] = (sql, statement)
        sql, statement = cached
        return statement.sql(connection) if statement is not None else sql


def _writable(model: type[Model]) -> list[Field]:
    meta = model._meta
    for field in meta.local_concrete_fields:
        if field.db_default is not NOT_PROVIDED or (field.db_returning and field is not meta.auto_field):
            raise ValueError(f"{meta.label}.{field.name}: a value the database computes is not supported here")
    return [field for field in meta.local_concrete_fields if field is not meta.auto_field]


class CompiledInsert(Generic[M]):
    def __init__(self, model: type[M], *, ignore_conflicts: bool = False, signals_done: bool = False) -> None:
        """`ignore_conflicts`: a row that breaks a unique constraint is skipped (ON
        CONFLICT DO NOTHING), as bulk_create(ignore_conflicts=True) does; create then
        returns None."""
        self.model = model
        self.fields = _writable(model)
        self.ignore_conflicts = ignore_conflicts
        self._statements = _Statements(model, self._render, signals_done=signals_done)

    def _render(self, connection) -> tuple[str, int]:
        qn, meta = connection.ops.quote_name, self.model._meta
        columns = ", ".join(qn(field.column) for field in self.fields)
        marks = ", ".join(["%s"] * len(self.fields))
        conflict = " ON CONFLICT DO NOTHING" if self.ignore_conflicts else ""
        sql = f"INSERT INTO {qn(meta.db_table)} ({columns}) VALUES ({marks}){conflict} RETURNING {qn(meta.pk.column)}"
        return sql, len(self.fields)

    def create(self, *, using: str = "default", **values: Any) -> M | None:
        """The saved instance, as Model.objects.create(**values) returns it."""
        instance = self.model(**values)
        connection = connections[using]
        params = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in self.fields]
        with connection.cursor() as cursor:
            cursor.execute(self._statements.sql(using), params)
            row = cursor.fetchone()
        if row is None:
            return None  # a conflict, skipped
        meta = self.model._meta
        if meta.auto_field is not None:
            instance.pk = meta.pk.to_python(row[0])
        instance._state.adding = False
        instance._state.db = using
        return instance


class CompiledUpdate(Generic[M]):
    def __init__(self, model: type[M], fields: list[str], *, signals_done: bool = False) -> None:
        self.model = model
        meta = model._meta
        self.fields = [meta.get_field(name) for name in fields]
        self._statements = _Statements(model, self._render, signals_done=signals_done)

    def _render(self, connection) -> tuple[str, int]:
        qn, meta = connection.ops.quote_name, self.model._meta
        assignments = ", ".join(f"{qn(field.column)} = %s" for field in self.fields)
        return f"UPDATE {qn(meta.db_table)} SET {assignments} WHERE {qn(meta.pk.column)} = %s", len(self.fields) + 1

    def save(self, instance: M, *, using: str = "default") -> None:
        """instance.save(update_fields=fields): the same values written (auto_now fields
        set on the instance first), and the same error for a row that is gone."""
        connection = connections[using]
        params = [field.get_db_prep_save(field.pre_save(instance, False), connection) for field in self.fields]
        params.append(self.model._meta.pk.get_db_prep_value(instance.pk, connection))
        with connection.cursor() as cursor:
            cursor.execute(self._statements.sql(using), params)
            if cursor.rowcount == 0:
                raise DatabaseError("Save with update_fields did not affect any rows.")
