from django.urls import path

from reviews.consumers import ReviewQueueConsumer

websocket_urlpatterns = [
    path("ws/v1/tenants/<slug:tenant_slug>/reviews/", ReviewQueueConsumer.as_asgi(), name="ws-review-queue"),
]
