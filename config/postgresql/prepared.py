"""Named server-side prepared statements on Django's PostgreSQL connections.

Django binds parameters on the client (psycopg's ClientCursor), so PostgreSQL parses
and plans every statement it receives from scratch. For the point queries every request
and every run makes (config.compiled_sql's: the token with its membership, the locked
task and contract, the resume's permission check with its four correlated subqueries)
planning cost more than running: 1.9 ms to plan the permission check, 0.17 ms to run
it. config.compiled_writes' inserts and updates by key run the same way. Prepared once
per connection and run with EXECUTE, a statement is planned for its first few runs and
then, as PostgreSQL decides, from a cached generic plan.

Only for lookups by key, whose best plan does not depend on the values. A list page's
does: generic plans took the queue's filtered pages at 1M tasks from 25 ms to 220-800
ms, so the ORM's ordinary queries are left as they are.

A statement lives as long as its session: PREPARE survives a rollback, a pooled
connection keeps its statements between checkouts, and a new connection (a new psycopg
object) starts with none. A pooler that gives one session to many clients in turn
(PgBouncer in transaction mode) breaks that: DATABASE_PREPARED_STATEMENTS=false then
sends the SQL itself, as Django does.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper

_PREPARED_ON = "_hitl_prepared"  # set on the psycopg connection: names prepared in its session
_names = itertools.count(1)
_PLACEHOLDER = re.compile(r"%(s|%)")
_EXECUTE = re.compile(r"EXECUTE (hitl_\d+)\b")
_sql_by_name: dict[str, str] = {}


def prepared_statements_on(connection: BaseDatabaseWrapper) -> bool:
    """Whether this connection's hot statements are prepared (read when they are first
    compiled, once per process)."""
    return connection.vendor == "postgresql" and settings.DATABASE_PREPARED_STATEMENTS


class PreparedStatement:
    def __init__(self, sql: str, params: Sequence[Any], slots: dict[int, str]) -> None:
        """`sql` with psycopg's `%s` placeholders (and `%%` for a literal %), as Django
        renders it, and its parameters; `slots` names the positions whose value each
        call gives (one name may fill several). The others are the same at every call
        and are written into the statement as literals, so the planner sees them: a
        status or a permission codename decides which partial index fits, and a plan
        blind to them would be re-planned at every call."""
        count = _PLACEHOLDER.findall(sql).count("s")
        if count != len(params):
            raise ValueError(f"{count} placeholders in the SQL for {len(params)} parameters")
        self.name = f"hitl_{next(_names)}"
        self.names = list(dict.fromkeys(slots[i] for i in sorted(slots)))
        numbers = {name: n for n, name in enumerate(self.names, start=1)}
        positions = itertools.count()

        def placeholder(match: re.Match) -> str:
            if match[1] == "%":
                return "%%"
            index = next(positions)
            return f"${numbers[slots[index]]}" if index in slots else "%s"

        self._prepare = f"PREPARE {self.name} AS {_PLACEHOLDER.sub(placeholder, sql)}"
        self._constants = [param for i, param in enumerate(params) if i not in slots]
        marks = ", ".join(["%s"] * len(self.names))
        self._execute = f"EXECUTE {self.name}({marks})" if self.names else f"EXECUTE {self.name}"
        _sql_by_name[self.name] = sql

    def sql(self, connection: BaseDatabaseWrapper) -> str:
        """The statement to run on this connection, with one value per name of `names`:
        EXECUTE, once this connection's session has prepared it."""
        connection.ensure_connection()
        raw = connection.connection
        prepared = getattr(raw, _PREPARED_ON, None)
        if prepared is None:
            prepared = set()
            setattr(raw, _PREPARED_ON, prepared)
        if self.name not in prepared:
            with connection.cursor() as cursor:
                # Bound on the client, as every statement of Django's: the constants
                # become literals; the $n stay for EXECUTE's values.
                cursor.execute(self._prepare, self._constants)
            prepared.add(self.name)
        return self._execute


def statement_sql(executed: str) -> str:
    """What an EXECUTE in a query log (Django's, PostgreSQL's) ran: the prepared SQL of
    a statement of this process, or `executed` itself."""
    match = _EXECUTE.match(executed)
    return _sql_by_name.get(match[1], executed) if match else executed
