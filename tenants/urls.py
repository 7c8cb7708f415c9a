from django.urls import path

from tenants.apis import AuditListApi, MemberDetailApi, MemberListCreateApi

urlpatterns = [
    path("members/", MemberListCreateApi.as_view(), name="member-list"),
    path("members/<int:member_id>/", MemberDetailApi.as_view(), name="member-detail"),
    path("audit/", AuditListApi.as_view(), name="audit-list"),
]
