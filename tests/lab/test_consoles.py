"""A real guest's serial console through the portal's relay (Channels' communicator, SSH to the lab worker).

What a browser tab does, minus the browser: two viewers of one running VM, typing into
its shell, seeing the guest's answers (not the echo), Ctrl-C stopping a ping; then its
graphical console, where QEMU's VNC server greets through the relay.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

import pytest
from channels.layers import channel_layers
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model

from provisioning import consoles
from provisioning.lab import console
from provisioning.routing import websocket_urlpatterns
from tests.aio import run_async
from tests.lab.test_e2e import new_slice, portal  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


async def viewer(vm_id: int, user) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/vms/{vm_id}/console/")
    comm.scope["user"] = user
    assert (await comm.connect())[0]
    while True:  # the scrollback, up to "live"
        message = await comm.receive_output(timeout=30)
        assert message["type"] == "websocket.send", message
        if message.get("text"):
            assert json.loads(message["text"]) == {"event": "live"}
            return comm


async def until(comm: WebsocketCommunicator, pattern: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, seen):
        left = deadline - time.monotonic()
        assert left > 0, f"{pattern!r} not seen in {seen[-500:]!r}"
        message = await comm.receive_output(timeout=left)
        assert message["type"] == "websocket.send", (message, seen[-500:])
        seen += message.get("bytes") or b""
    return seen


def test_two_viewers_type_into_a_running_guest(portal, lab, settings):  # noqa: F811
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": settings.REDIS_URL, "socket_timeout": 30}],
                "prefix": f"sp-lab-{uuid.uuid4().hex[:8]}",
            },
        }
    }
    channel_layers.backends = {}
    s = new_slice(portal, "console")
    vm = portal.vm(s["id"], "vm1", host="worker1", data=1)
    portal.run(s["id"], "deploy")
    state_dir = portal.state_dir(vm)
    console.wait_for_line(state_dir, vm["id"], r"SP: READY", timeout=120)
    user = get_user_model().objects.get(username="e2e")

    async def go():
        first = await viewer(vm["id"], user)
        second = await viewer(vm["id"], user)
        await first.send_to(text_data="\x03expr 6 \\* 7\r")
        # The tty echoes "expr 6 \* 7"; "42" alone on a line is the guest's answer.
        for comm in (first, second):
            await until(comm, rb"\n42\r?\n")
        await second.send_to(text_data="ping 127.0.0.1\r")
        for comm in (first, second):
            await until(comm, rb"(?s)bytes from 127\.0\.0\.1.*bytes from 127\.0\.0\.1")
        await first.send_to(bytes_data=b"\x03")
        for comm in (first, second):
            await until(comm, rb"ping statistics")
        await first.disconnect(timeout=10)
        await second.disconnect(timeout=10)
        deadline = time.monotonic() + 10
        while vm["id"] in consoles._relays and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert vm["id"] not in consoles._relays

    async def screen():
        """The graphical console: QEMU's own VNC server answers through the relay (RFB version first)."""
        comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/vms/{vm['id']}/vnc/")
        comm.scope["user"] = user
        assert (await comm.connect())[0]
        greeting = await until(comm, rb"^RFB 003\.00\d\n")
        await comm.disconnect(timeout=10)
        return greeting

    connections = consoles.stats["connections"]
    run_async(go())
    assert consoles.stats["connections"] == connections + 1  # one relay, one SSH connection, for both
    assert run_async(screen()).startswith(b"RFB 003.008")
    # The relay let go of the serial socket: the lab's own console works again.
    assert portal.sh(vm, "echo back-$((20+1))").output.strip() == "back-21"
    portal.run(s["id"], "destroy")
