"""Graphical consoles: a VM's VNC server (QEMU, a unix socket on its worker) relayed to one browser tab.

QEMU serves each guest's display on ``{state_dir}/vms/vm{id}/vnc.sock`` (never a TCP
port; ``share=force-shared`` lets several clients watch and type at once), so unlike
the serial console there is no fan-out: every viewer gets a session of its own, the
WebSocket carrying the RFB bytes both ways (noVNC speaks RFB itself). A session is one
SSH connection to the VM's worker, opened exactly as the runner's
(:class:`~provisioning.consoles.SerialLink`: host keys checked, unknown keys refused),
running ``socat - UNIX-CONNECT:.../vnc.sock``; closing the tab closes the connection,
and socat with it. The access check, close codes and idle timeout are the serial
console's (provisioning/consumers.py, docs/consoles.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from django.conf import settings

from . import consoles
from .plans.layout import VmFiles
from .plans.shell import sh

log = logging.getLogger(__name__)

# Run on the worker: bridge stdin/stdout to QEMU's VNC socket (no lock: QEMU takes several clients).
SH_VNC_RELAY = (
    '[ -S "$1" ] || { echo "no VNC socket $1 (is the VM running?)" >&2; exit 3; }; exec socat - "UNIX-CONNECT:$1"'
)
# RFB client messages that are a user's doing (keyboard, pointer): only they reset the idle timer.
# noVNC also sends framebuffer update requests on its own, all the time; it sends each message in a frame.
RFB_KEY_EVENT = 4
RFB_POINTER_EVENT = 5


def vnc_argv(files: VmFiles) -> tuple[str, ...]:
    """The host-side command of a graphical console (data: quoted once, where it enters the remote shell)."""
    return sh(SH_VNC_RELAY, "sp-vnc", files.vnc_sock)


def is_user_input(frame: bytes) -> bool:
    return bool(frame) and frame[0] in (RFB_KEY_EVENT, RFB_POINTER_EVENT)


class VncSession:
    """One viewer's graphical console: its own SSH session to ``vnc.sock`` and a pump of the screen's bytes.

    ``send`` delivers the guest's bytes to the viewer; ``end(code, reason)`` closes the
    viewer (the VNC socket closed, or nobody typed or moved the mouse for
    ``CONSOLE_IDLE_TIMEOUT`` seconds).
    """

    def __init__(
        self,
        target: consoles.ConsoleTarget,
        *,
        send: Callable[[bytes], Awaitable[None]],
        end: Callable[[int, str], Awaitable[None]],
    ) -> None:
        self.target = target
        self.link = consoles.SerialLink(target, vnc_argv(target.files))
        self._send = send
        self._end = end
        self.last_input = time.monotonic()
        self.task: asyncio.Future | None = None

    async def open(self) -> None:
        """Connect and start socat (HostUnreachable, or another error, if not), then pump in the background."""
        try:
            await asyncio.to_thread(self.link.open)
        except BaseException:
            await asyncio.to_thread(self.link.close)
            raise
        self.last_input = time.monotonic()  # the idle time counts from here, not from before the SSH handshake
        self.task = asyncio.ensure_future(self._run())

    async def input(self, frame: bytes) -> None:
        """A frame from the viewer (RFB client messages): to the guest's VNC server as they are."""
        if is_user_input(frame):
            self.last_input = time.monotonic()
        await asyncio.to_thread(self.link.send, frame)

    async def close(self) -> None:
        """Stop pumping and close the SSH connection (socat on the worker sees EOF and exits)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        await asyncio.to_thread(self.link.close)

    async def _run(self) -> None:
        chunks = consoles.read_in_thread(self.link, name=f"sp-vnc-vm{self.target.vm_id}")
        idle = settings.CONSOLE_IDLE_TIMEOUT
        while True:
            # Checked on every chunk too: a blinking cursor sends updates, which are not input.
            remaining = self.last_input + idle - time.monotonic()
            if remaining <= 0:
                await self._end(consoles.CLOSE_IDLE, f"Closed after {idle} s without a keystroke or a click.")
                return
            try:
                data = await asyncio.wait_for(chunks.get(), timeout=remaining)
            except TimeoutError:
                continue
            if not data:
                await self._end(consoles.CLOSE_GUEST_GONE, self.link.failure()[:120])
                return
            await self._send(data)
