from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from config.health import healthz, readyz
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
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/v1/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api/v1/", include(stream_urls)),
    path("api/v1/tenants/<slug:tenant_slug>/", include(tenant_api)),
]

# Unroutable paths (an id of the wrong shape, an unknown route) never reach DRF; under
# /api/ they still answer with the one JSON error body.
handler404 = "config.api_errors.page_not_found"
