"""OpenAPI pieces shared by every API module: the one error body, documented once."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

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
            if error_schema is None:
                error_schema = next(
                    (r["content"] for code, r in responses.items() if code.startswith("4") and "content" in r), None
                )
            if "415" not in responses and error_schema is not None:
                responses["415"] = {"content": error_schema, "description": _DESCRIPTIONS[415]}
    return result
