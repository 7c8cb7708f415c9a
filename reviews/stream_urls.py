from django.urls import path

from reviews import stream_apis

# Mounted at /api/v1/.
urlpatterns = [
    path("ws-ticket/", stream_apis.WebsocketTicketApi.as_view(), name="ws-ticket"),
]

# Mounted with the tenant APIs, at /api/v1/tenants/<slug>/.
tenant_urlpatterns = [
    path("events/", stream_apis.QueueEventListApi.as_view(), name="queue-event-list"),
]
