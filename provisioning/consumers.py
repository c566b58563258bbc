"""WebSocket consumers: a VM's interactive serial console and its graphical console (docs/consoles.md).

Access is decided when the WebSocket connects, before any SSH connection: only the
slice's owner and staff get a console; anyone else is closed with a code and a reason.
The user comes from the session cookie or an API token (provisioning/ws_auth.py).
"""

from __future__ import annotations

import asyncio
import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from audit.log import record as audit
from audit.models import AuditEvent
from slices.models import VM

from . import consoles, vnc
from .runners import HostUnreachable


def console_access(
    *, user, vm_id: int, auth_error: str | None = None, address: str | None = None
) -> tuple[consoles.ConsoleTarget | None, tuple[int, str] | None]:
    """(the VM's console, None) when ``user`` may open it, else (None, (close code, reason)).

    ``auth_error``: why the handshake's token was refused (then nobody is logged in).
    Both answers go to the audit log, with the client's ``address``.
    """
    target, refusal = _console_access(user=user, vm_id=vm_id, auth_error=auth_error)
    vm = VM.objects.select_related("slice", "host").filter(pk=vm_id).first()
    audit(
        AuditEvent.Action.CONSOLE_REFUSED if refusal else AuditEvent.Action.CONSOLE_OPENED,
        slice_obj=vm.slice if vm is not None else None,
        user=user if user is not None and user.is_authenticated else None,
        target=f"VM {vm.name}" if vm is not None else f"VM id {vm_id}",
        host=vm.host.name if vm is not None and vm.host_id else "",
        detail=refusal[1] if refusal else "",
        address=address,
        via="console",
    )
    return target, refusal


def _console_access(
    *, user, vm_id: int, auth_error: str | None
) -> tuple[consoles.ConsoleTarget | None, tuple[int, str] | None]:
    if auth_error:
        return None, (consoles.CLOSE_NOT_LOGGED_IN, auth_error)
    if user is None or not user.is_authenticated:
        return None, (consoles.CLOSE_NOT_LOGGED_IN, "Log in to open a console.")
    vm = VM.objects.select_related("slice", "host").filter(pk=vm_id).first()
    if vm is None or not (user.is_staff or vm.slice.owner_id == user.pk):
        # Another user's VM and a missing one get the same answer (as in the API).
        return None, (consoles.CLOSE_NOT_FOUND, "No such VM.")
    if vm.host is None or vm.status != VM.Status.RUNNING:
        return None, (consoles.CLOSE_NOT_RUNNING, f"VM {vm.name} is {vm.status}, not running: no console.")
    return consoles.console_target(host=vm.host, state_dir=vm.host.state_dir, vm_id=vm.pk), None


class ClosingConsumer(AsyncWebsocketConsumer):
    """A console WebSocket that closes with a code and a reason."""

    async def end(self, code: int, reason: str) -> None:
        """Close with a code and reason, said first in a text frame too (daphne drops a close frame's reason)."""
        await self.send(text_data=json.dumps({"event": "closed", "code": code, "reason": reason}))
        await self.close(code=code, reason=reason)


class ConsoleConsumer(ClosingConsumer):
    """One viewer of a VM's serial console: bytes both ways, through the VM's one relay."""

    relay: str | None = None
    group: str | None = None
    watchdog: asyncio.Task | None = None

    async def connect(self) -> None:
        vm_id = int(self.scope["url_route"]["kwargs"]["vm_id"])
        # Accept first: a close code and reason can only be sent on an open WebSocket.
        await self.accept()
        target, refusal = await database_sync_to_async(console_access)(
            user=self.scope.get("user"),
            vm_id=vm_id,
            auth_error=self.scope.get("auth_error"),
            address=(self.scope.get("client") or [None])[0],
        )
        if refusal is not None:
            await self.end(*refusal)
            return
        self.group = consoles.group_name(vm_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.relay = await consoles.join(target, viewer=self.channel_name)
        self.watchdog = asyncio.ensure_future(self._expect_welcome())

    async def _expect_welcome(self) -> None:
        """A relay that never answers (its process died, its lease not yet expired): say so, close."""
        await asyncio.sleep(consoles.READY_TIMEOUT)
        self.relay = None
        await self.end(consoles.CLOSE_NO_RELAY, "The console relay did not answer: reconnect.")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Keystrokes and pastes: binary frames as they are, text frames as UTF-8."""
        if self.relay is None:
            return
        data = bytes_data if bytes_data is not None else (text_data or "").encode()
        if data:
            await consoles.send_input(self.relay, data)

    async def disconnect(self, code: int) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.relay is not None:
            await consoles.leave(self.relay, viewer=self.channel_name)
            self.relay = None

    # -- messages from the relay --

    async def console_ready(self, event: dict) -> None:
        """The scrollback (binary), then a text frame {"event": "live"}: live output follows."""
        if self.watchdog is not None:
            self.watchdog.cancel()
        if event["scrollback"]:
            await self.send(bytes_data=event["scrollback"])
        await self.send(text_data=json.dumps({"event": "live"}))

    async def console_output(self, event: dict) -> None:
        await self.send(bytes_data=event["data"])

    async def console_closed(self, event: dict) -> None:
        self.relay = None  # the relay is gone: no leave to send
        await self.end(event["code"], event["reason"])


class VncConsumer(ClosingConsumer):
    """One viewer of a VM's graphical console: RFB bytes both ways, through an SSH session of its own.

    The same access check and close codes as the serial console; no scrollback and no
    "live" event (noVNC starts the RFB handshake at once). Before closing, the same text
    frame ``{"event": "closed", "code": N, "reason": "..."}`` (noVNC ignores text frames).
    """

    session: vnc.VncSession | None = None

    async def connect(self) -> None:
        vm_id = int(self.scope["url_route"]["kwargs"]["vm_id"])
        await self.accept()
        target, refusal = await database_sync_to_async(console_access)(
            user=self.scope.get("user"), vm_id=vm_id, auth_error=self.scope.get("auth_error")
        )
        if refusal is not None:
            await self.end(*refusal)
            return
        session = vnc.VncSession(target, send=self._to_viewer, end=self._ended)
        try:
            await session.open()
        except HostUnreachable as exc:
            await self.end(consoles.CLOSE_UNREACHABLE, f"Console unreachable: {exc}"[:120])
            return
        except Exception as exc:
            await self.end(consoles.CLOSE_UNREACHABLE, f"Console unreachable: {type(exc).__name__}: {exc}"[:120])
            return
        self.session = session

    async def _to_viewer(self, data: bytes) -> None:
        await self.send(bytes_data=data)

    async def _ended(self, code: int, reason: str) -> None:
        """The session ended (VNC socket closed, idle): close the viewer; disconnect closes the SSH side."""
        await self.end(code, reason)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is not None and bytes_data:
            await self.session.input(bytes_data)

    async def disconnect(self, code: int) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.close()
