"""Django's PostgreSQL backend, with a pool that tests a connection only when it has
been idle for a while.

With CONN_HEALTH_CHECKS, Django gives its pool psycopg_pool's check, which sends an
empty query before every checkout. PostgreSQL runs even that as a transaction of its
own: 13 of a contract's 53 transactions, one round trip on every request, websocket
check and worker loop. A connection handed back moments ago is as alive as the check
would find it, so, as other pools do (HikariCP's 500 ms bypass), only one that has sat
in the pool for POOL_CHECK_AFTER_IDLE_SECONDS is tested; a dead one is given back (the
pool replaces it) and the next is taken. A backend killed within that window fails the
one request that meets it, a 503 (config.api_errors); the connection is then discarded.
"""

from __future__ import annotations

import time

import psycopg
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

POOL_CHECK_AFTER_IDLE_SECONDS = 1.0
_RETURNED_AT = "_hitl_returned_at"


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        conn = super().get_new_connection(conn_params)
        if self.pool is None:
            return conn
        # Every connection the pool holds is tried before giving up, as psycopg_pool's
        # own check loop would (one more: a replacement may have been opened meanwhile).
        for _ in range(self.pool.max_size + 1):
            if not self._stale(conn):
                return conn
            try:
                ConnectionPool.check_connection(conn)
                return conn
            except psycopg.Error:
                self.pool.putconn(conn)  # broken: the pool discards it and opens another
                conn = super().get_new_connection(conn_params)
        return conn

    @staticmethod
    def _stale(conn) -> bool:
        # One never handed back may have waited in the pool since it was opened: tested
        # at its first checkout.
        returned_at = getattr(conn, _RETURNED_AT, None)
        return returned_at is None or time.monotonic() - returned_at > POOL_CHECK_AFTER_IDLE_SECONDS

    def _close(self):
        if self.pool is not None and self.connection is not None:
            setattr(self.connection, _RETURNED_AT, time.monotonic())
        return super()._close()
