"""Garbage collection for the long-running processes (the ASGI server, the workers).

CPython's default thresholds run a full collection every few seconds in a busy server,
and a full collection walks every object: Django's, DRF's and LangGraph's modules and
a thousand sockets' state. Measured with 1,000 websocket clients (bench/ws.py), two
events of forty waited 170-180 ms for one, which was the whole p99 (about 200 ms). What
was loaded at start-up is frozen (never collected: it lives as long as the process),
and the old generations are collected twenty and a hundred times less often than the
young one (CPython: 10 and 10).

The young generation is collected after 5,000 allocations (CPython: 700). Each request
leaves a few hundred objects in reference cycles (DRF's serializers and requests point
back at themselves), which wait for it. At 50,000 a collection took 21 ms once every
40 queue pages at 1M tasks, the page's whole p99 (31 ms against a p50 of 8); at 5,000
it takes about 1 ms ten times as often, the middle generation's 8 ms once every 120
pages, and the p99 was 13 ms, with less time in collections overall.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD = 5_000, 20, 100


def gc_tune_for_serving() -> None:
    """Call once the process has loaded its code, before it starts serving."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
