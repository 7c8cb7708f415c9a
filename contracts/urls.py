from django.urls import path

from contracts.apis import ContractDetailApi, ContractListCreateApi

urlpatterns = [
    path("contracts/", ContractListCreateApi.as_view(), name="contract-list"),
    path("contracts/<uuid:contract_id>/", ContractDetailApi.as_view(), name="contract-detail"),
]
