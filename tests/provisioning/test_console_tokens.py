"""An API token opens a console WebSocket (slicectl console), through the whole ASGI WebSocket stack.

Browsers send the session cookie and an Origin (checked against ALLOWED_HOSTS); a
client with ``Authorization: Token <key>`` sends no Origin, and then the token alone
decides who it is. Access is the same rule as for the cookie (owner or staff), and
a refused connection never reaches SSH.
"""

import time

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from provisioning import consoles
from provisioning.routing import websocket_urlpatterns
from provisioning.ws_auth import websocket_stack
from tests.aio import run_async

from .conftest import needs_sshd
from .consoles_support import closed_with, logins, read_until, session_cookie, wait_live

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    needs_sshd,
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("console_layer"),
]


def communicator(vm_id: int, **headers: str) -> WebsocketCommunicator:
    """A WebSocket to the VM's console through portal/asgi.py's stack (Origin rule, session, token)."""
    app = websocket_stack(URLRouter(websocket_urlpatterns))
    encoded = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return WebsocketCommunicator(app, f"/ws/vms/{vm_id}/console/", headers=encoded)


def token(user) -> str:
    return f"Token {Token.objects.get_or_create(user=user)[0].key}"


async def refused(vm_id: int, **headers: str) -> tuple[int, str]:
    comm = communicator(vm_id, **headers)
    connected, _ = await comm.connect(timeout=10)
    assert connected
    return await closed_with(comm)


def test_the_owners_and_staffs_tokens_open_the_console_without_an_origin(running_vm, user, staff_user, sshd):
    before = logins(sshd)
    owner_token, staff_token = token(user), token(staff_user)

    async def go():
        owner = communicator(running_vm.pk, Authorization=owner_token)
        assert (await owner.connect(timeout=10))[0]
        scrollback = await wait_live(owner)
        staff = communicator(running_vm.pk, Authorization=staff_token)
        assert (await staff.connect(timeout=10))[0]
        await wait_live(staff)
        await owner.send_to(bytes_data=b"expr 6 \\* 7\n")
        seen = await read_until(owner, b"42")
        await owner.disconnect(timeout=10)
        await staff.disconnect(timeout=10)
        return scrollback, seen

    scrollback, seen = run_async(go())
    assert b"Linux version 6.1 booting" in scrollback and b"42" in seen
    assert logins(sshd) == before + 1


def test_refused_tokens_never_reach_ssh(running_vm, user, other_user, sshd):
    before, connections = logins(sshd), consoles.stats["connections"]
    foreign, cookie = token(other_user), session_cookie(user)

    async def go():
        return {
            # another user's token: the same answer as another user's cookie, or a VM that does not exist
            "foreign": await refused(running_vm.pk, Authorization=foreign),
            "missing": await refused(running_vm.pk + 1000, Authorization=foreign),
            "unknown key": await refused(running_vm.pk, Authorization="Token " + "0" * 40),
            "no key": await refused(running_vm.pk, Authorization="Token"),
            "two keys": await refused(running_vm.pk, Authorization="Token a b"),
            # a bad token is not rescued by the owner's session cookie: the token decides
            "bad token, owner's cookie": await refused(running_vm.pk, Authorization="token nope", Cookie=cookie),
        }

    answers = run_async(go())
    assert answers["foreign"] == answers["missing"] == (consoles.CLOSE_NOT_FOUND, "No such VM.")
    assert (
        answers["unknown key"]
        == answers["bad token, owner's cookie"]
        == (consoles.CLOSE_NOT_LOGGED_IN, "Invalid token.")
    )
    assert answers["no key"] == answers["two keys"] == (consoles.CLOSE_NOT_LOGGED_IN, "Invalid token.")
    time.sleep(0.5)
    assert logins(sshd) == before and consoles.stats["connections"] == connections


def test_an_inactive_users_token_is_refused(running_vm, user):
    key = token(user)
    user.is_active = False
    user.save()
    code, reason = run_async(refused(running_vm.pk, Authorization=key))
    assert code == consoles.CLOSE_NOT_LOGGED_IN and "inactive" in reason.lower()


def test_the_origin_rule_still_holds(running_vm, user, settings):
    """No Origin passes only with a token; a present Origin is checked, token or not."""
    settings.ALLOWED_HOSTS = ["portal.example"]
    cookie, key = session_cookie(user), token(user)

    async def handshake(**headers: str) -> bool:
        comm = communicator(running_vm.pk, **headers)
        connected, _ = await comm.connect(timeout=10)
        await comm.disconnect()
        return connected

    async def go():
        return {
            "cookie, no origin": await handshake(Cookie=cookie),
            "cookie, other site": await handshake(Cookie=cookie, Origin="http://evil.example"),
            "token, other site": await handshake(Authorization=key, Origin="http://evil.example"),
            "nothing": await handshake(),
        }

    assert run_async(go()) == dict.fromkeys(
        ("cookie, no origin", "cookie, other site", "token, other site", "nothing"), False
    )

    async def allowed():
        return await refused(running_vm.pk + 1000, Cookie=cookie, Origin="http://portal.example")

    # the portal's own Origin with the cookie gets as far as the access check (a missing VM here: no SSH)
    assert run_async(allowed()) == (consoles.CLOSE_NOT_FOUND, "No such VM.")
