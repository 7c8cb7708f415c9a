from django.urls import path

from reviews.apis import ReviewTaskDetailApi, ReviewTaskListApi, ReviewTaskResumeApi

urlpatterns = [
    path("reviews/", ReviewTaskListApi.as_view(), name="review-list"),
    path("reviews/<uuid:task_id>/", ReviewTaskDetailApi.as_view(), name="review-detail"),
    path("reviews/<uuid:task_id>/resume/", ReviewTaskResumeApi.as_view(), name="review-resume"),
]
