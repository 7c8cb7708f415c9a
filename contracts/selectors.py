from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet

from config.api_errors import NotFound
from contracts.models import Contract
from tenants.models import Tenant


def contract_list(*, tenant: Tenant) -> QuerySet[Contract]:
    return Contract.objects.filter(tenant=tenant)


def contract_get(*, tenant: Tenant, contract_id: UUID | str) -> Contract:
    contract = contract_list(tenant=tenant).filter(pk=contract_id).first()
    if contract is None:
        raise NotFound()
    return contract
