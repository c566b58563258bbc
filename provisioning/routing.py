"""WebSocket routes (portal/asgi.py mounts them)."""

from django.urls import path

from .consumers import ConsoleConsumer, VncConsumer

websocket_urlpatterns = [
    path("ws/vms/<int:vm_id>/console/", ConsoleConsumer.as_asgi(), name="vm-console"),
    path("ws/vms/<int:vm_id>/vnc/", VncConsumer.as_asgi(), name="vm-vnc"),
]
