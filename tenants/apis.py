"""The base every tenant API view stands on: the tenant comes from the URL and is
resolved once, against the caller's memberships, before any handler runs."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from tenants.models import Membership, Tenant
from tenants.selectors import tenant_get_for_member


class StrictInputSerializer(serializers.Serializer):
    """Rejects fields it does not declare, so `{"status": "approved"}` or `{"tenant": ...}`
    in a request body is a 400 naming the field, never silently ignored or applied."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class TenantAPIView(APIView):
    tenant: Tenant
    membership: Membership

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication and permissions first: 401 before 404
        self.tenant, self.membership = tenant_get_for_member(slug=kwargs["tenant_slug"], user=request.user)
