from django.urls import path

from reviews import apis, policy_apis, webhook_apis

urlpatterns = [
    path("reviews/", apis.ReviewTaskListApi.as_view(), name="review-list"),
    path("reviews/batch-resume/", apis.BatchResumeApi.as_view(), name="review-batch-resume"),
    path("reviews/<uuid:task_id>/", apis.ReviewTaskDetailApi.as_view(), name="review-detail"),
    path("reviews/<uuid:task_id>/resume/", apis.ReviewTaskResumeApi.as_view(), name="review-resume"),
    path("reviews/<uuid:task_id>/claim/", apis.ReviewTaskClaimApi.as_view(), name="review-claim"),
    path("reviews/<uuid:task_id>/release/", apis.ReviewTaskReleaseApi.as_view(), name="review-release"),
    path("reviews/<uuid:task_id>/cancel/", apis.ReviewTaskCancelApi.as_view(), name="review-cancel"),
    path("reviews/<uuid:object_id>/grants/", apis.ReviewTaskGrantApi.as_view(), name="review-grants"),
    path("reviews/<uuid:object_id>/grants/revoke/", apis.ReviewTaskRevokeApi.as_view(), name="review-grants-revoke"),
    path("contracts/<uuid:object_id>/grants/", apis.ContractGrantApi.as_view(), name="contract-grants"),
    path("contracts/<uuid:object_id>/grants/revoke/", apis.ContractRevokeApi.as_view(), name="contract-grants-revoke"),
    path("reviews/<uuid:task_id>/reassign/", apis.ReviewTaskReassignApi.as_view(), name="review-reassign"),
    path("reviews/<uuid:task_id>/comments/", apis.ReviewTaskCommentsApi.as_view(), name="review-comments"),
    path("policies/", policy_apis.ReviewPoliciesApi.as_view(), name="review-policies"),
    path("webhooks/", webhook_apis.WebhookListCreateApi.as_view(), name="webhook-list"),
    path("webhooks/<uuid:webhook_id>/", webhook_apis.WebhookDetailApi.as_view(), name="webhook-detail"),
    path("webhooks/<uuid:webhook_id>/rotate-secret/", webhook_apis.WebhookRotateSecretApi.as_view(),
         name="webhook-rotate-secret"),
    path("webhooks/<uuid:webhook_id>/deliveries/", webhook_apis.WebhookDeliveryListApi.as_view(),
         name="webhook-deliveries"),
    path("webhooks/<uuid:webhook_id>/deliveries/<uuid:delivery_id>/retry/", webhook_apis.WebhookDeliveryRetryApi.as_view(),
         name="webhook-delivery-retry"),
]
