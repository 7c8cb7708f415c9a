"""Django's ASGI handler, with the synchronous request stack run in one thread hop, on
threads kept for the process's lifetime.

Every middleware we use, and every view, is synchronous. Django's own ASGI handler
builds an asynchronous middleware chain and sends each middleware hook and the view to
a worker thread on its own: about fifteen thread hops per request, which cost more CPU
than most requests' own work (measured under uvicorn: `/healthz` took 2.8 ms of server
CPU, against 0.4 ms under a WSGI server). Here the chain is loaded in synchronous mode,
as under WSGI, and the whole of it runs in a single hop.

Django also opens a ThreadSensitiveContext per request, which starts a new thread for
it and stops it afterwards, and hops to that thread twice more (the request_started
signal, and response.close()). Here the request_started signal, the view and, for a
response held in memory, response.close() (request_finished: the request's database
connection goes back to the pool) run in one call on a pool of request threads, each in
a fresh copy of the event loop's context, as sync_to_async would run them. A streaming
response (the LangGraph API's runs.wait and runs.stream, static files) is sent as
Django sends one: in a ThreadSensitiveContext of its own, watching for the client
going away.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.db import close_old_connections
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix

# At most this many requests run their synchronous part at once in a process; more wait
# for a thread. Well above the database pool (DATABASE_POOL_SIZE, 10), which bounds the
# requests that do work anyway, so a request that touches no database is never queued
# behind them for long.
REQUEST_THREADS = 64
_request_threads = ThreadPoolExecutor(max_workers=REQUEST_THREADS, thread_name_prefix="request")


class SyncStackASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            loop = asyncio.get_running_loop()
            response = await loop.run_in_executor(
                _request_threads, contextvars.copy_context().run, self._respond, scope, body_file
            )
            if response.streaming:
                async with ThreadSensitiveContext():
                    await self._send_streaming(response, receive, send)
            else:
                await self.send_response(response, send)
        finally:
            body_file.close()

    def _respond(self, scope, body_file) -> HttpResponseBase:
        """On a request thread: what Django's handler does for a request in its three
        thread hops, in one."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
        if not response.streaming:
            response.close()  # request_finished, before the bytes are sent: they are in memory
            return response
        # Its content is produced later, on the event loop: this thread's database
        # connection goes back to the pool now, not when the thread next serves a request.
        close_old_connections()
        if isinstance(response, FileResponse):
            # As Django's handler: the ASGI server does the low-level chunking.
            response.block_size = self.chunk_size
            if not response.is_async:
                # A file (WhiteNoise's static files) is read in a synchronous loop:
                # Django would read it whole into memory first, with a warning on every
                # response. Read it chunk by chunk in a worker thread instead.
                response.streaming_content = _chunks_in_thread(iter(response.streaming_content))
        return response

    async def _send_streaming(self, response, receive, send) -> None:
        """Send a streaming response until it ends or the client goes away, then close it
        (Django's handler, for the part after the view)."""
        sending = asyncio.create_task(self.send_response(response, send))
        listening = asyncio.create_task(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait([sending, listening], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (listening, sending):
                if not task.done():
                    task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, RequestAborted):
                    pass
            await sync_to_async(response.close)()


async def _chunks_in_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    read = sync_to_async(next, thread_sensitive=False)
    while (chunk := await read(chunks, None)) is not None:
        yield chunk


def http_application() -> SyncStackASGIHandler:
    """As django.core.asgi.get_asgi_application(), with the handler above."""
    django.setup(set_prefix=False)
    return SyncStackASGIHandler()
