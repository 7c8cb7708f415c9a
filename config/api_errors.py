"""One error family for the whole product and the one place it becomes HTTP.

Every error body has the same shape: {"error": {"code", "message", "fields"}}, except
under the LangGraph-compatible prefixes, which answer as LangGraph Platform does,
{"detail": message, "code": code, ...} (contracts.platform.errors re-shapes this
module's answers; error_body_for picks the shape by path).
"""

from __future__ import annotations

from typing import Any

import psycopg
from django import db
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ApplicationError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.extra = extra or {}


class InvalidInput(ApplicationError):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"


class NotFound(ApplicationError):
    # The same for objects that don't exist and objects of another tenant.
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"

    def __init__(self, message: str = "Not found.", **kwargs: Any):
        super().__init__(message, **kwargs)


class Forbidden(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "forbidden"


class Conflict(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class IdempotencyKeyReused(ApplicationError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "idempotency_key_reused"


# --- The database is away -----------------------------------------------------------------

# An outage (a restart, a failover, terminated connections, an exhausted pool) is not the
# client's fault nor a bug: 503 with Retry-After, in the one error format, so a client
# backs off and retries; nothing half-written is left (each write is one transaction).
RETRY_AFTER_SECONDS = 5


def is_database_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, (db.OperationalError, db.InterfaceError, psycopg.OperationalError, psycopg.InterfaceError))


DATABASE_UNAVAILABLE_MESSAGE = "The database is unavailable; retry shortly."


def database_unavailable_body() -> dict:
    return _body("service_unavailable", DATABASE_UNAVAILABLE_MESSAGE)


def _body(code: str, message: str, fields: dict | None = None, **extra: Any) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}, **extra}}


# Paths whose every answer is JSON: the REST API, and the LangGraph-compatible API with
# its Agent Inbox prefix (contracts.platform), whose errors carry `detail`, the field
# LangGraph's SDKs read.
REST_PREFIXES = ("/api/",)
DETAIL_PREFIXES = ("/langgraph/", "/agent-inbox/")
JSON_PREFIXES = REST_PREFIXES + DETAIL_PREFIXES


def detail_body(code: str, message: str, **extra: Any) -> dict:
    return {"detail": message, "code": code, **extra}


def error_body_for(path: str, code: str, message: str) -> dict:
    """The error body a failure outside the views gets, in the format of its prefix."""
    return detail_body(code, message) if path.startswith(DETAIL_PREFIXES) else _body(code, message)


def _flatten(detail: Any) -> dict[str, list[str]]:
    """DRF's nested ValidationError detail -> {"field.sub": ["message", ...]}."""
    flat: dict[str, list[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, list) and value and not all(isinstance(v, (str, exceptions.ErrorDetail)) for v in value):
            for index, sub in enumerate(value):
                if sub:
                    walk(f"{prefix}.{index}" if prefix else str(index), sub)
        else:
            messages = value if isinstance(value, list) else [value]
            flat.setdefault(prefix or "non_field_errors", []).extend(str(m) for m in messages)

    walk("", detail)
    return flat


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if is_database_unavailable(exc):
        return Response(database_unavailable_body(), status=status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    if isinstance(exc, ApplicationError):
        return Response(_body(exc.code, exc.message, exc.fields, **exc.extra), status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        return Response(_body("payload_too_large", "Request body is too large."), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, Http404):
        return Response(_body("not_found", "Not found."), status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        first = next(iter(fields.items()), ("", ["Invalid input."]))
        message = f"{first[0]}: {first[1][0]}" if first[0] != "non_field_errors" else first[1][0]
        return Response(_body("invalid", message, fields), status=status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = getattr(exc, "detail", None)
    code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
    response.data = _body(str(code), str(detail) if detail is not None else str(exc))
    return response


def page_not_found(request, exception=None):
    from django.http import JsonResponse
    from django.views import defaults

    if request.path.startswith(JSON_PREFIXES):
        return JsonResponse(error_body_for(request.path, "not_found", "Not found."), status=status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception)
