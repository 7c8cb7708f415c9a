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
    422: "Idempotency-Key reused with a different request.",
    429: "Too many requests; see Retry-After.",
}

ERROR_RESPONSES = {code: OpenApiResponse(ErrorSerializer, description=text) for code, text in _DESCRIPTIONS.items()}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: ERROR_RESPONSES[code] for code in codes}
