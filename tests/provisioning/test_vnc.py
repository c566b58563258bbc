"""The graphical console relay (Channels' WebsocketCommunicator, a real sshd on 127.0.0.1, a fake VNC server).

The fake VNC server listens on the VM's ``vnc.sock``, greets with the RFB version as
QEMU does, then echoes: what a viewer sends comes back through the whole relay.
"""

import asyncio
import json
import time

import pytest
from channels.testing import WebsocketCommunicator

from provisioning import consoles
from slices.models import VM
from tests.aio import run_async

from .conftest import needs_sshd
from .consoles_support import (
    FAKE_RFB_GREETING,
    closed_with,
    logins,
    open_ws,
    read_until,
    relays_on_worker,
    session_cookie,
    sshd_sessions,
)

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    needs_sshd,
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("console_layer"),
]

KEY_EVENT = b"\x04\x01\x00\x00\x00\x00\x00\x61"  # RFB KeyEvent: "a" pressed


async def open_vnc(vm_id: int, user) -> WebsocketCommunicator:
    return await open_ws(f"/ws/vms/{vm_id}/vnc/", user)


def wait_for(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_anonymous_and_another_user_are_refused_before_any_ssh(vnc_vm, sshd, other_user):
    from django.contrib.auth.models import AnonymousUser

    before, connections = logins(sshd), consoles.stats["connections"]

    async def go():
        anonymous = await closed_with(await open_vnc(vnc_vm.pk, AnonymousUser()))
        foreign = await closed_with(await open_vnc(vnc_vm.pk, other_user))
        missing = await closed_with(await open_vnc(vnc_vm.pk + 1000, other_user))
        return anonymous, foreign, missing

    anonymous, foreign, missing = run_async(go())
    assert anonymous == (consoles.CLOSE_NOT_LOGGED_IN, "Log in to open a console.")
    assert foreign == missing == (consoles.CLOSE_NOT_FOUND, "No such VM.")
    time.sleep(0.5)
    assert logins(sshd) == before and consoles.stats["connections"] == connections


def test_a_stopped_vm_has_no_screen(vnc_vm, user, sshd):
    VM.objects.filter(pk=vnc_vm.pk).update(status=VM.Status.STOPPED)
    before = logins(sshd)

    async def go():
        return await closed_with(await open_vnc(vnc_vm.pk, user))

    code, reason = run_async(go())
    assert code == consoles.CLOSE_NOT_RUNNING and "stopped" in reason
    assert logins(sshd) == before


def test_two_viewers_each_get_the_rfb_stream_of_their_own(vnc_vm, user, staff_user, sshd):
    opened = consoles.stats["connections"]

    async def go():
        owner = await open_vnc(vnc_vm.pk, user)
        staff = await open_vnc(vnc_vm.pk, staff_user)
        for comm in (owner, staff):
            assert (await read_until(comm, FAKE_RFB_GREETING)).startswith(FAKE_RFB_GREETING)
        await owner.send_to(bytes_data=KEY_EVENT)
        await staff.send_to(bytes_data=b"RFB 003.008\n")
        assert KEY_EVENT in await read_until(owner, KEY_EVENT)
        assert b"RFB 003.008\n" in await read_until(staff, b"RFB 003.008\n")
        assert await staff.receive_nothing(timeout=0.5)  # the owner's bytes are not the staff's
        await owner.disconnect(timeout=10)
        await staff.disconnect(timeout=10)

    run_async(go())
    assert consoles.stats["connections"] == opened + 2  # one SSH connection per viewer (no fan-out)
    wait_for(lambda: relays_on_worker(vnc_vm.vnc_sock) == 0)
    assert relays_on_worker(vnc_vm.vnc_sock) == 0


def test_twenty_open_close_cycles_leave_nothing_behind(vnc_vm, user, sshd):
    sessions = sshd_sessions(sshd)
    opened, closed = consoles.stats["connections"], consoles.stats["closed"]

    async def go():
        for i in range(20):
            comm = await open_vnc(vnc_vm.pk, user)
            await read_until(comm, FAKE_RFB_GREETING)
            await comm.send_to(bytes_data=b"cycle-%d" % i)
            await read_until(comm, b"cycle-%d" % i)
            await comm.disconnect(timeout=10)

    run_async(go())
    wait_for(lambda: relays_on_worker(vnc_vm.vnc_sock) == 0 and sshd_sessions(sshd) <= sessions)
    assert relays_on_worker(vnc_vm.vnc_sock) == 0
    assert sshd_sessions(sshd) == sessions
    assert consoles.stats["connections"] - opened == 20 == consoles.stats["closed"] - closed


def test_screen_updates_alone_do_not_keep_it_open(vnc_vm, user, settings):
    """Idle means no key and no pointer event: noVNC's own update requests and the screen's bytes do not count."""
    settings.CONSOLE_IDLE_TIMEOUT = 2
    request = b"\x03\x01\x00\x00\x00\x00\x02\xd0\x01\x90"  # FramebufferUpdateRequest (type 3)

    async def go():
        started = time.monotonic()
        comm = await open_vnc(vnc_vm.pk, user)
        await read_until(comm, FAKE_RFB_GREETING)
        said = None
        while True:  # requests every 0.25 s, echoed: traffic both ways, but no input
            await comm.send_to(bytes_data=request)
            message = await comm.receive_output(timeout=10)
            if message.get("text"):
                said = json.loads(message["text"])
            elif message["type"] == "websocket.close":
                await comm.disconnect()
                return time.monotonic() - started, message["code"], said
            await asyncio.sleep(0.25)

    after, code, said = run_async(go())
    assert code == consoles.CLOSE_IDLE == said["code"] and "without a keystroke or a click" in said["reason"]
    assert 2 <= after < 8
    wait_for(lambda: relays_on_worker(vnc_vm.vnc_sock) == 0)
    assert relays_on_worker(vnc_vm.vnc_sock) == 0


def test_a_missing_vnc_socket_is_said(running_vm, user):
    """A VM started before it had a display (no vnc.sock): closed with 4410 and the worker's reason."""

    async def go():
        comm = await open_vnc(running_vm.pk, user)
        return await closed_with(comm)

    code, reason = run_async(go())
    assert code == consoles.CLOSE_GUEST_GONE and "no VNC socket" in reason


def test_a_real_websocket_through_daphne(vnc_vm, user, other_user, sshd, daphne):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = f"ws://{daphne}/ws/vms/{vnc_vm.pk}/vnc/"
    origin = f"http://{daphne}"
    before = logins(sshd)

    def refusal(**headers) -> tuple[int, str]:
        with connect(url, origin=origin, additional_headers=headers, open_timeout=10) as ws:
            said = json.loads(ws.recv(timeout=10))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert said["event"] == "closed" and said["code"] == closed.value.rcvd.code
        return said["code"], said["reason"]

    assert refusal() == (consoles.CLOSE_NOT_LOGGED_IN, "Log in to open a console.")
    assert refusal(Cookie=session_cookie(other_user)) == (consoles.CLOSE_NOT_FOUND, "No such VM.")
    assert logins(sshd) == before  # no SSH login for either

    with connect(url, origin=origin, additional_headers={"Cookie": session_cookie(user)}, open_timeout=10) as ws:
        seen = b""
        while FAKE_RFB_GREETING not in seen:
            seen += ws.recv(timeout=10)
        ws.send(KEY_EVENT)
        seen = b""
        while KEY_EVENT not in seen:
            seen += ws.recv(timeout=10)
    assert logins(sshd) == before + 1
    wait_for(lambda: relays_on_worker(vnc_vm.vnc_sock) == 0)
    assert relays_on_worker(vnc_vm.vnc_sock) == 0
