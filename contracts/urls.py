from django.urls import path

from contracts.apis import ContractDetailApi, ContractListCreateApi, ContractRetryApi, RetentionApi

urlpatterns = [
    path("contracts/", ContractListCreateApi.as_view(), name="contract-list"),
    path("contracts/<uuid:contract_id>/", ContractDetailApi.as_view(), name="contract-detail"),
    path("contracts/<uuid:contract_id>/retry/", ContractRetryApi.as_view(), name="contract-retry"),
    path("retention/", RetentionApi.as_view(), name="retention"),
]
