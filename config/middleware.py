"""Under /api/ (and the LangGraph-compatible prefixes) every answer is JSON, even when
the failure happened outside DRF."""

from __future__ import annotations

import sys

from django.core.signals import got_request_exception
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse

from config.api_errors import (
    DATABASE_UNAVAILABLE_MESSAGE,
    JSON_PREFIXES,
    RETRY_AFTER_SECONDS,
    error_body_for,
    is_database_unavailable,
)

API_PREFIXES = JSON_PREFIXES


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)


@receiver(got_request_exception)
def _remember_exception(sender, request=None, **kwargs) -> None:
    """Django reports every uncaught exception here before it renders its own 500 page
    (in whichever middleware or view it was raised); keep it for the middleware below."""
    if request is not None:
        request._uncaught_exception = sys.exc_info()[1]


class ApiJsonErrorsMiddleware:
    """Outermost: replaces Django's HTML error page under /api/ with the API's error body.
    A database that is away (raised by a session or authentication lookup before DRF
    runs, or by a view) is a 503 with Retry-After; anything else unexpected a JSON 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code < 500 or not is_api_path(request.path) or _is_json(response):
            return response
        exc = getattr(request, "_uncaught_exception", None)
        if exc is not None and is_database_unavailable(exc):
            replacement = JsonResponse(
                error_body_for(request.path, "service_unavailable", DATABASE_UNAVAILABLE_MESSAGE),
                status=503,
            )
            replacement["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return replacement
        return JsonResponse(error_body_for(request.path, "server_error", "Internal server error."),
                            status=response.status_code)


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("application/json")
