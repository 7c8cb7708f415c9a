"""Errors as LangGraph Platform answers them: {"detail": message, "code": ..., ...}.

The SDKs map the status to a typed exception (400 BadRequestError, 401
AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError, 409 ConflictError,
422 UnprocessableEntityError, 429 RateLimitError, 5xx InternalServerError) and read
`detail` (and `code`) from the body. The mapping of our errors to statuses stays the
REST API's (config.api_errors.exception_handler); only the body is re-shaped here, and
invalid input is a 422, as on the Platform.
"""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.response import Response

from config.api_errors import ApplicationError, detail_body
from config.api_errors import exception_handler as rest_exception_handler


class BadRequest(ApplicationError):
    """A request the Platform answers with 400, not a validation error (422): a
    resume on a run without a thread."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "bad_request"


def platform_exception_handler(exc: Exception, context: dict) -> Response | None:
    response = rest_exception_handler(exc, context)
    if response is None:
        return None  # unexpected: Django's 500, which the middleware turns into JSON
    error: dict[str, Any] = dict(response.data.get("error", {})) if isinstance(response.data, dict) else {}
    code = error.pop("code", "error")
    message = error.pop("message", "Error.")
    fields = error.pop("fields", {})
    # A refusal may say why more precisely than its class (unknown_interrupt, ...).
    code = error.pop("reason", code)
    body = detail_body(code, message, **error)
    if fields:
        body["fields"] = fields
    if response.status_code == status.HTTP_400_BAD_REQUEST and code == "invalid":
        response.status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    response.data = body
    return response
