"""Django's ASGI handler, with the synchronous request stack run in one thread hop.

Every middleware we use, and every view, is synchronous. Django's own ASGI handler
builds an asynchronous middleware chain and sends each middleware hook and the view to
a worker thread on its own: about fifteen thread hops per request, which cost more CPU
than most requests' own work (measured under uvicorn: `/healthz` took 2.8 ms of server
CPU, against 0.4 ms under a WSGI server). Here the chain is loaded in synchronous mode,
as under WSGI, and the whole of it runs in a single hop.

The hop is thread-sensitive inside the request's ThreadSensitiveContext (which Django's
handler opens), so it runs on the request's own thread, the same one that later closes
the response: the request's database connection goes back to the pool from the thread
that took it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import FileResponse


class SyncStackASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    async def run_get_response(self, request):
        response = await sync_to_async(self.get_response, thread_sensitive=True)(request)
        response._handler_class = self.__class__
        # As Django's handler: the ASGI server does the low-level chunking.
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
            if not response.is_async:
                # A file (WhiteNoise's static files) is read in a synchronous loop:
                # Django would read it whole into memory first, with a warning on every
                # response. Read it chunk by chunk in a worker thread instead.
                response.streaming_content = _chunks_in_thread(iter(response.streaming_content))
        return response


async def _chunks_in_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    read = sync_to_async(next, thread_sensitive=False)
    while (chunk := await read(chunks, None)) is not None:
        yield chunk


def http_application() -> SyncStackASGIHandler:
    """As django.core.asgi.get_asgi_application(), with the handler above."""
    django.setup(set_prefix=False)
    return SyncStackASGIHandler()
