"""WebSocket routes (portal/asgi.py mounts them)."""

from django.urls import path

from .consumers import ConsoleConsumer

websocket_urlpatterns = [
    path("ws/vms/<int:vm_id>/console/", ConsoleConsumer.as_asgi(), name="vm-console"),
]
