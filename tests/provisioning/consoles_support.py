"""What the console tests share: a channel layer of their own, a running VM with a fake guest, daphne.

The fake guest is socat listening on the VM's ``console.sock`` with a shell behind it,
so what a viewer types is run and answered, as on a guest's serial console; its fake
VNC server (``vnc.sock``) greets like QEMU's and echoes. The
fixtures are registered by ``conftest.py`` (test modules use them by name).
"""

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from channels.layers import channel_layers
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connection

from provisioning.routing import websocket_urlpatterns
from slices.models import VM

APP = URLRouter(websocket_urlpatterns)


@pytest.fixture
def console_layer(settings):
    """A channel layer of its own in the real Redis (members' test runs share one Redis)."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": settings.REDIS_URL, "socket_timeout": 30}],
                "prefix": f"sp-test-{uuid.uuid4().hex[:8]}",
            },
        }
    }
    channel_layers.backends = {}
    yield
    channel_layers.backends = {}


@pytest.fixture
def running_vm(ssh_hosts, make_slice, user):
    """vm1 of the user's slice, running on worker1, with a fake guest on its console socket."""
    worker = ssh_hosts["workers"][0]
    slice_obj = make_slice(user, vms=1)
    vm = slice_obj.vms.get()
    VM.objects.filter(pk=vm.pk).update(host=worker, status=VM.Status.RUNNING)
    vm.refresh_from_db()
    vm_dir = Path(worker.state_dir) / "vms" / f"vm{vm.pk}"
    vm_dir.mkdir(parents=True)
    (vm_dir / "console.log").write_text("Linux version 6.1 booting\r\nlogin prompt from the past\r\n")
    sock = vm_dir / "console.sock"
    guest = subprocess.Popen(["socat", f"UNIX-LISTEN:{sock},fork", "EXEC:/bin/sh,stderr"])
    deadline = time.monotonic() + 5
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    vm.sock = sock
    yield vm
    guest.terminate()  # by its PID (its forked children end with their connections)
    guest.wait(timeout=5)


# A fake VNC server: says the RFB version like QEMU's, then echoes what the viewer sends.
FAKE_RFB_GREETING = b"RFB 003.008\n"


@pytest.fixture
def vnc_vm(running_vm):
    """running_vm with a fake VNC server on its ``vnc.sock`` (socat, one child per client, as QEMU takes several)."""
    sock = running_vm.sock.with_name("vnc.sock")
    server = subprocess.Popen(
        ["socat", f"UNIX-LISTEN:{sock},fork", f"SYSTEM:echo {FAKE_RFB_GREETING.decode().strip()}; exec cat"]
    )
    deadline = time.monotonic() + 5
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    running_vm.vnc_sock = sock
    yield running_vm
    server.terminate()  # by its PID
    server.wait(timeout=5)


@pytest.fixture
def daphne(settings, sshd, console_layer):
    """daphne serving portal.asgi (HTTP and WebSockets) on a free port, on this test's database and channel layer."""
    from .conftest import free_port  # here: conftest imports this module

    port = free_port()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "PROVISIONING_KNOWN_HOSTS": str(sshd.known_hosts),
        "CHANNELS_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        "SECRET_KEY": settings.SECRET_KEY,
    }
    daphne_bin = Path(sys.executable).with_name("daphne")
    proc = subprocess.Popen(
        [str(daphne_bin), "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()  # by its PID
    proc.wait(timeout=10)


def relays_on_worker(sock: Path) -> int:
    """socat processes a relay started on the worker for this socket."""
    out = subprocess.run(["pgrep", "-f", f"UNIX-CONNECT:{sock}"], capture_output=True, text=True).stdout
    return len(out.split())


def sshd_sessions(sshd) -> int:
    """Processes below the test sshd (one per open SSH connection and session)."""
    out = subprocess.run(["pgrep", "-P", str(sshd.proc.pid)], capture_output=True, text=True).stdout
    return len(out.split())


async def open_ws(path: str, user) -> WebsocketCommunicator:
    """A connected WebSocket to ``path`` (e.g. ``/ws/vms/1/console/``) as ``user``."""
    comm = WebsocketCommunicator(APP, path)
    comm.scope["user"] = user
    connected, _ = await comm.connect()
    assert connected
    return comm


def session_cookie(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def logins(sshd) -> int:
    return sshd.log.read_text().count("Accepted publickey") if sshd.log.exists() else 0


async def read_until(comm: WebsocketCommunicator, needle: bytes, timeout: float = 15) -> bytes:
    """Binary output until ``needle`` shows up (text frames are the relay's events)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not seen; got {seen!r}"
        message = await comm.receive_output(timeout=left)
        if message["type"] == "websocket.close":
            raise AssertionError(f"closed {message}; got {seen!r}")
        seen += message.get("bytes") or b""
    return seen


async def wait_live(comm: WebsocketCommunicator) -> bytes:
    """The scrollback, up to the {"event": "live"} text frame."""
    scrollback = b""
    while True:
        message = await comm.receive_output(timeout=15)
        assert message["type"] == "websocket.send", message
        if message.get("text"):
            assert json.loads(message["text"]) == {"event": "live"}
            return scrollback
        scrollback += message["bytes"]


async def closed_with(comm: WebsocketCommunicator) -> tuple[int, str]:
    """The close code and reason, after the text frame that says them first."""
    said = json.loads((await comm.receive_output(timeout=10))["text"])
    message = await comm.receive_output(timeout=10)
    assert message["type"] == "websocket.close", message
    assert (said["event"], said["code"], said["reason"]) == ("closed", message["code"], message["reason"])
    # Let the consumer see the client go and end by itself: cancelling it mid-receive at the end of
    # asyncio.run can leave the channel layer's receive waiting on Redis (a hang seen under load).
    await comm.disconnect()
    return message["code"], message["reason"]
