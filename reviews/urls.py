from django.urls import path

from reviews import apis

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
]
