"""The default database's connection parameters, for psycopg directly: the connections
Django does not hold (the checkpointer's, the LISTEN connections of the worker and the
queue relay) reach the same database, with the same libpq options."""

from __future__ import annotations

from typing import Any

from django.db import connections

# Keys of a DATABASES entry's OPTIONS that are Django's, not libpq's.
_DJANGO_ONLY_OPTIONS = {"isolation_level", "server_side_binding", "assume_role", "pool"}


def psycopg_params() -> dict[str, Any]:
    # connections[...].settings_dict, not settings.DATABASES: tests point it at their database.
    db = connections["default"].settings_dict
    options = {k: v for k, v in (db.get("OPTIONS") or {}).items() if k not in _DJANGO_ONLY_OPTIONS}
    params = {"dbname": db["NAME"], "user": db.get("USER") or None, "password": db.get("PASSWORD") or None,
              "host": db.get("HOST") or None, "port": db.get("PORT") or None, **options}
    return {k: v for k, v in params.items() if v is not None}
