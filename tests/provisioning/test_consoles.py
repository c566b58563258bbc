"""The serial console relay (Channels' WebsocketCommunicator, a real sshd on 127.0.0.1, a fake guest).

The fake guest is socat listening on the VM's ``console.sock`` with a shell behind it,
so what a viewer types is run and answered, as on a guest's serial console.
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
    closed_with,
    logins,
    open_ws,
    read_until,
    relays_on_worker,
    session_cookie,
    sshd_sessions,
    wait_live,
)

# The fixtures (running_vm, console_layer, daphne) are in consoles_support, registered by conftest.
pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    needs_sshd,
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("console_layer"),
]


async def open_console(vm_id: int, user) -> WebsocketCommunicator:
    return await open_ws(f"/ws/vms/{vm_id}/console/", user)


async def relay_gone(vm_id: int, timeout: float = 10) -> None:
    """The VM's relay (in this process) ended: its last viewer left, or it closed them."""
    deadline = time.monotonic() + timeout
    while vm_id in consoles._relays and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert vm_id not in consoles._relays


def test_anonymous_is_refused_before_any_ssh(running_vm, sshd):
    from django.contrib.auth.models import AnonymousUser

    before, connections = logins(sshd), consoles.stats["connections"]

    async def go():
        comm = await open_console(running_vm.pk, AnonymousUser())
        return await closed_with(comm)

    code, reason = run_async(go())
    assert (code, reason) == (consoles.CLOSE_NOT_LOGGED_IN, "Log in to open a console.")
    time.sleep(0.5)
    assert logins(sshd) == before and consoles.stats["connections"] == connections


def test_another_user_is_refused_like_a_missing_vm(running_vm, sshd, other_user):
    before = logins(sshd)

    async def go():
        foreign = await closed_with(await open_console(running_vm.pk, other_user))
        missing = await closed_with(await open_console(running_vm.pk + 1000, other_user))
        return foreign, missing

    foreign, missing = run_async(go())
    assert foreign == missing == (consoles.CLOSE_NOT_FOUND, "No such VM.")
    time.sleep(0.5)
    assert logins(sshd) == before


def test_a_stopped_vm_has_no_console(running_vm, user):
    VM.objects.filter(pk=running_vm.pk).update(status=VM.Status.STOPPED)

    async def go():
        return await closed_with(await open_console(running_vm.pk, user))

    code, reason = run_async(go())
    assert code == consoles.CLOSE_NOT_RUNNING and "stopped" in reason


def test_owner_gets_scrollback_then_types_into_the_guest(running_vm, user, staff_user):
    async def go():
        owner = await open_console(running_vm.pk, user)
        scrollback = await wait_live(owner)
        staff = await open_console(running_vm.pk, staff_user)  # a second viewer: the same relay
        await wait_live(staff)
        await owner.send_to(text_data="expr 6 \\* 7\n")
        # No tty on the fake guest: no echo, so "42" is the guest's answer.
        seen_by = [await read_until(owner, b"42"), await read_until(staff, b"42")]
        await staff.send_to(bytes_data=b"echo from-$((40+2))-staff\n")
        seen_by += [await read_until(owner, b"from-42-staff"), await read_until(staff, b"from-42-staff")]
        await owner.disconnect(timeout=10)
        await staff.disconnect(timeout=10)
        await relay_gone(running_vm.pk)
        return scrollback, seen_by

    connections = consoles.stats["connections"]
    scrollback, _seen = run_async(go())
    assert b"Linux version 6.1 booting" in scrollback
    assert consoles.stats["connections"] == connections + 1  # one relay for both viewers


def test_twenty_open_close_cycles_leave_nothing_behind(running_vm, user, sshd):
    sessions = sshd_sessions(sshd)
    opened, closed = consoles.stats["connections"], consoles.stats["closed"]

    async def cycle():
        comm = await open_console(running_vm.pk, user)
        await wait_live(comm)
        await comm.send_to(text_data="echo ok$((1+1))\n")
        await read_until(comm, b"ok2")
        await comm.disconnect(timeout=10)

    async def go():
        for _ in range(20):
            await cycle()
            # The relay closes its session after the last viewer left: wait for it before the next one.
            await relay_gone(running_vm.pk)

    run_async(go())
    deadline = time.monotonic() + 10
    while (relays_on_worker(running_vm.sock) or sshd_sessions(sshd) > sessions) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert relays_on_worker(running_vm.sock) == 0
    assert sshd_sessions(sshd) == sessions
    assert consoles.stats["connections"] - opened == 20 == consoles.stats["closed"] - closed


def test_an_idle_console_closes(running_vm, user, settings):
    settings.CONSOLE_IDLE_TIMEOUT = 1

    async def go():
        comm = await open_console(running_vm.pk, user)
        await wait_live(comm)
        while True:
            message = await comm.receive_output(timeout=10)
            if message.get("text") and json.loads(message["text"])["event"] == "closed":
                message = await comm.receive_output(timeout=10)
            if message["type"] == "websocket.close":
                await relay_gone(running_vm.pk)
                return message["code"], message["reason"]

    code, reason = run_async(go())
    assert code == consoles.CLOSE_IDLE and "without a keystroke" in reason
    deadline = time.monotonic() + 10
    while relays_on_worker(running_vm.sock) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert relays_on_worker(running_vm.sock) == 0


# --- a real WebSocket against the ASGI server (daphne in a subprocess: consoles_support.daphne) -----------


def test_a_real_websocket_through_daphne(running_vm, user, other_user, sshd, daphne):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = f"ws://{daphne}/ws/vms/{running_vm.pk}/console/"
    origin = f"http://{daphne}"
    before = logins(sshd)

    def refusal(**headers) -> tuple[int, str]:
        with connect(url, origin=origin, additional_headers=headers, open_timeout=10) as ws:
            said = json.loads(ws.recv(timeout=10))  # daphne drops a close frame's reason: the text frame says it
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert said["event"] == "closed" and said["code"] == closed.value.rcvd.code
        return said["code"], said["reason"]

    assert refusal() == (consoles.CLOSE_NOT_LOGGED_IN, "Log in to open a console.")
    assert refusal(Cookie=session_cookie(other_user)) == (consoles.CLOSE_NOT_FOUND, "No such VM.")
    assert logins(sshd) == before  # no SSH login for either

    with connect(url, origin=origin, additional_headers={"Cookie": session_cookie(user)}, open_timeout=10) as ws:
        seen = b""
        while (frame := ws.recv(timeout=10)) != '{"event": "live"}':
            seen += frame
        assert b"Linux version 6.1 booting" in seen
        ws.send(b"expr 6 \\* 7\n")
        seen = b""
        while b"42" not in seen:
            seen += ws.recv(timeout=10)
    assert logins(sshd) == before + 1

    # Another site's page cannot use the session cookie: its Origin is refused at the handshake.
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus):
        connect(url, origin="http://evil.example", additional_headers={"Cookie": session_cookie(user)})
