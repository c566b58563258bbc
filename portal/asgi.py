"""ASGI entry point: HTTP (Django) and WebSockets (Channels: the VM consoles) from one process.

``manage.py runserver`` serves it in development (daphne is in INSTALLED_APPS);
in production run ``daphne portal.asgi:application`` behind a web server that
forwards WebSocket upgrades (README, docs/consoles.md).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# Django first: the consumers import models, which need the app registry ready.
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from provisioning.routing import websocket_urlpatterns  # noqa: E402
from provisioning.ws_auth import websocket_stack  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        # The session cookie authenticates a browser's WebSocket: another site's page must not open one
        # with it, so the Origin header has to name one of ALLOWED_HOSTS (the WebSocket's CSRF check).
        # A client with an API token (slicectl) sends no Origin; then the token alone says who it is.
        "websocket": websocket_stack(URLRouter(websocket_urlpatterns)),
    }
)
