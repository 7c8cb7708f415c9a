from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path


def healthz(request):
    return JsonResponse({"status": "ok"})


tenant_api = [
    path("", include("contracts.urls")),
    path("", include("reviews.urls")),
    path("", include("tenants.urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/tenants/<slug:tenant_slug>/", include(tenant_api)),
]
