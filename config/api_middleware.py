"""Keeps the API's promise that every error is `{"error": {"code", "message", "fields"}}`
(under the LangGraph prefixes `{"detail", "code"}`, see config.api_errors.error_body_for)
where DRF's exception handler never runs: URLs that resolve to no view, a missing
trailing slash, Django's own debug pages, and a database that is away before DRF runs
(a session or authentication lookup), which is a 503 with Retry-After.

In DEBUG (the embedded default) Django answers an unroutable path with its HTML
technical 404 page, and CommonMiddleware raises a RuntimeError (an HTML 500) for a POST
whose URL lacks its trailing slash, because its 301 redirect would turn the POST into a
GET. Under /api/ the redirect is a 308 instead, which keeps the method and the body, and
any error response that is not JSON is replaced by the JSON body for its status.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from django.core.signals import got_request_exception
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.middleware.common import CommonMiddleware as DjangoCommonMiddleware
from django.utils.http import escape_leading_slashes

from config.api_errors import (
    DATABASE_UNAVAILABLE_MESSAGE,
    JSON_PREFIXES,
    RETRY_AFTER_SECONDS,
    error_body_for,
    is_database_unavailable,
)

API_PREFIX = "/api/"

_CODES = {
    400: ("invalid", "Bad request."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("forbidden", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    413: ("payload_too_large", "Request body is too large."),
    500: ("server_error", "Internal server error."),
}


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def _answers_json(request: HttpRequest) -> bool:
    """The REST API, and the LangGraph-compatible prefixes (contracts.platform)."""
    return request.path_info.startswith(JSON_PREFIXES)


class HttpResponsePermanentRedirectKeepingMethod(HttpResponsePermanentRedirect):
    status_code = 308


class CommonMiddleware(DjangoCommonMiddleware):
    """Django's CommonMiddleware; under /api/ a missing slash is a 308, in DEBUG too."""

    def get_full_path_with_slash(self, request: HttpRequest) -> str:
        if not _is_api(request):
            return super().get_full_path_with_slash(request)
        # Django's version refuses (RuntimeError) in DEBUG for POST, PUT and PATCH,
        # since its 301 would lose the body; a 308 does not.
        return escape_leading_slashes(request.get_full_path(force_append_slash=True))

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        return self._keep_method(request, super().process_request(request))

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        return self._keep_method(request, super().process_response(request, response))

    @staticmethod
    def _keep_method(request: HttpRequest, response: HttpResponse | None) -> HttpResponse | None:
        if response is not None and _is_api(request) and type(response) is HttpResponsePermanentRedirect:
            return HttpResponsePermanentRedirectKeepingMethod(response["Location"])
        return response


@receiver(got_request_exception)
def _remember_exception(sender, request=None, **kwargs) -> None:
    """Django reports every uncaught exception here before it renders its own 500 page
    (in whichever middleware or view it was raised); kept for the middleware below."""
    if request is not None:
        request._uncaught_exception = sys.exc_info()[1]


class ApiJsonErrorsMiddleware:
    """An error response under /api/ (or a LangGraph prefix) that is not JSON (Django's 404 and 500 pages, its
    DEBUG pages among them) becomes the API's JSON error body for the same status; one
    caused by the database being away becomes the API's 503. Outermost, so it also sees
    errors raised by the middleware below. The exception itself is still logged by
    Django's request logger."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        exc = getattr(request, "_uncaught_exception", None)
        if response.status_code >= 500 and _answers_json(request) and exc is not None and is_database_unavailable(exc):
            unavailable = JsonResponse(
                error_body_for(request.path_info, "service_unavailable", DATABASE_UNAVAILABLE_MESSAGE), status=503
            )
            unavailable["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return unavailable
        if (
            response.status_code >= 400
            and _answers_json(request)
            and not response.get("Content-Type", "").startswith("application/json")
            and not getattr(response, "streaming", False)
        ):
            code, message = _CODES.get(response.status_code, ("error", "Request failed."))
            if response.status_code >= 500 and response.status_code not in _CODES:
                code, message = "server_error", "Internal server error."
            replaced = JsonResponse(error_body_for(request.path_info, code, message), status=response.status_code)
            for header in ("Allow", "Retry-After", "WWW-Authenticate"):
                if header in response:
                    replaced[header] = response[header]
            return replaced
        return response
