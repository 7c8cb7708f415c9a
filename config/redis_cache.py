"""Django's Redis cache, keeping its client objects.

Django's RedisCacheClient builds a new `redis.Redis` for every cache call, around a
connection pool it does keep. Building one fills a table of a hundred response
callbacks: a quarter of the throttle's CPU, which runs on every API request. A
`redis.Redis` is safe to share between threads (each command takes a connection from
the pool), so one per pool is kept and reused.
"""

from __future__ import annotations

import threading

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class _SharedClients(RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}
        self._clients_lock = threading.Lock()

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            with self._clients_lock:
                client = self._clients.get(index)
                if client is None:
                    client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client


class SharedClientRedisCache(RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = _SharedClients
