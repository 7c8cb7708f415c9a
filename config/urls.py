from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

from config.api_docs import SchemaView
from config.health import healthz, readyz
from contracts.platform.urls import agent_inbox_urlpatterns, langgraph_urlpatterns
from reviews import stream_urls

tenant_api = [
    path("", include("contracts.urls")),
    path("", include("reviews.urls")),
    path("", include("tenants.urls")),
    path("", include(stream_urls.tenant_urlpatterns)),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    # Where a one-time set-password link leads (tenants.services.member_password_link_create).
    path("accounts/reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(),
         name="password_reset_confirm"),
    path("accounts/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("api/v1/schema/", SchemaView.as_view(), name="schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/v1/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api/v1/", include(stream_urls)),
    path("api/v1/tenants/<slug:tenant_slug>/", include(tenant_api)),
    # LangGraph Platform's API per tenant (contracts.platform): get_client(url=".../langgraph/<slug>").
    path("langgraph/<slug:tenant_slug>/", include(langgraph_urlpatterns)),
    path("agent-inbox/<slug:tenant_slug>/", include(agent_inbox_urlpatterns)),
]

# Unroutable paths (an id of the wrong shape, an unknown route) never reach DRF; under
# /api/ (and the LangGraph prefixes) they still answer with their JSON error body.
handler404 = "config.api_errors.page_not_found"
