"""OpenAPI pieces shared by every API module: the one error body, documented once."""

from __future__ import annotations

import threading
from typing import Any

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers
from rest_framework.response import Response

ErrorSerializer = inline_serializer(
    "Error",
    {
        "error": inline_serializer(
            "ErrorDetail",
            {
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(child=serializers.ListField(child=serializers.CharField())),
            },
        )
    },
)

_DESCRIPTIONS = {
    400: "Invalid input; `error.fields` names each failing field.",
    401: "No or invalid credentials.",
    403: "Your role or permissions do not allow this.",
    404: "No such object in this tenant (the same for another tenant's objects).",
    405: "Method not allowed.",
    409: "Conflict with the object's state (already resolved, claimed by someone else, ...).",
    413: "Request body too large.",
    415: "The body's media type is not one the operation reads (JSON, form or multipart).",
    422: "Idempotency-Key reused with a different request.",
    429: "Too many requests; see Retry-After.",
    503: "The database is unavailable; retry after Retry-After seconds.",
}

ERROR_RESPONSES = {code: OpenApiResponse(ErrorSerializer, description=text) for code, text in _DESCRIPTIONS.items()}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: ERROR_RESPONSES[code] for code in codes}


def document_unsupported_media_type(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: every operation that reads a body can answer
    415 (DRF's parsers refuse a media type, or a multipart body they cannot read), so
    each one documents it, with the same error body as the others."""
    error_schema = None
    for path in result.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            responses = operation.setdefault("responses", {})
            # The operation's own error body: the LangGraph prefixes answer in another
            # format than the REST API.
            error_schema = next(
                (r["content"] for code, r in responses.items() if code.startswith("4") and "content" in r), error_schema
            )
            if "415" not in responses and error_schema is not None:
                responses["415"] = {"content": error_schema, "description": _DESCRIPTIONS[415]}
    return result


class SchemaView(SpectacularAPIView):
    """The OpenAPI document, generated once per process and served from memory.

    It only changes with the code. Generated under a lock: drf-spectacular loads its
    extensions on the first generation, and two first requests at once (a fresh process
    behind a load balancer) made one of them fail with a 500."""

    _cache: dict[tuple, Any] = {}
    _lock = threading.Lock()

    def _get_schema_response(self, request):
        version = self.api_version or request.version or self._get_version_parameter(request)
        key = (version, request.GET.get("lang") or "")
        with self._lock:
            data = self._cache.get(key)
            if data is None:
                generator = self.generator_class(urlconf=self.urlconf, api_version=version, patterns=self.patterns)
                data = self._cache[key] = generator.get_schema(request=request, public=self.serve_public)
        return Response(
            data=data, headers={"Content-Disposition": f'inline; filename="{self._get_filename(request, version)}"'}
        )
