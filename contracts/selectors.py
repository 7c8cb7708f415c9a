from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet

from config.api_errors import NotFound
from contracts.models import FINAL_STATUSES, Contract, ContractStatus
from tenants.models import Tenant


def contract_list(
    *, tenant: Tenant, status: str | None = None, run_state: str | None = None, created_after=None, created_before=None
) -> QuerySet[Contract]:
    contracts = Contract.objects.filter(tenant=tenant)
    if status:
        contracts = contracts.filter(status=status)
    if run_state:
        contracts = contracts.filter(status__in=_RUN_STATE_STATUSES[run_state])
    if created_after is not None:
        contracts = contracts.filter(created_at__gte=created_after)
    if created_before is not None:
        contracts = contracts.filter(created_at__lt=created_before)
    return contracts


# The inverse of Contract.run_state.
_RUN_STATE_STATUSES = {
    "completed": list(FINAL_STATUSES),
    "waiting_for_review": [ContractStatus.WAITING_FOR_REVIEW],
    "failed": [ContractStatus.FAILED],
    "running": [ContractStatus.SUBMITTED, ContractStatus.RUNNING],
}


def contract_get(*, tenant: Tenant, contract_id: UUID | str) -> Contract:
    contract = contract_list(tenant=tenant).filter(pk=contract_id).first()
    if contract is None:
        raise NotFound()
    return contract
