from django.urls import path

from tenants import apis

urlpatterns = [
    path("members/", apis.MemberListCreateApi.as_view(), name="member-list"),
    path("members/<int:member_id>/", apis.MemberDetailApi.as_view(), name="member-detail"),
    path("members/<int:member_id>/tokens/", apis.AgentTokenListCreateApi.as_view(), name="member-tokens"),
    path("members/<int:member_id>/tokens/<int:token_id>/revoke/", apis.AgentTokenRevokeApi.as_view(), name="member-token-revoke"),
    path("audit/", apis.AuditListApi.as_view(), name="audit-list"),
]
