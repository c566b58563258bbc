"""Interactive serial consoles: one relay per VM between its viewers' WebSockets and the guest (docs/consoles.md).

- :class:`SerialLink` (blocking, paramiko): one SSH connection to the VM's worker,
  opened exactly as the runner opens its own (:meth:`FabricRunner.connection`: the
  host's key file, host keys checked against ``PROVISIONING_KNOWN_HOSTS``, unknown
  keys refused), a session running ``socat - UNIX-CONNECT:.../console.sock`` and, per
  viewer, a short one reading the tail of ``console.log`` (the scrollback).
- :class:`Relay` (asyncio): the one relay of a VM. It owns a channel of the channel
  layer and registers it in Redis (:func:`relay_key`, a lease it renews), so viewers in any
  portal process find it: they send it ``console.join`` / ``console.leave`` /
  ``console.input`` and receive the guest's output through the VM's group. It ends when
  its last viewer leaves, when nobody typed for ``CONSOLE_IDLE_TIMEOUT`` seconds, or
  when the guest's socket closes; ending closes the SSH session, and with it socat.
- QEMU's serial socket takes one client at a time: the relay's socat holds it while
  any viewer is connected. The host-side command takes the socket's lock file
  (``console.sock.lock``, as the lab's console does) so a relay and a lab console
  command never share the socket; the deploy job reads ``console.log`` (a file) and
  is never in the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass

import redis.asyncio as aioredis
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers, get_channel_layer
from django.conf import settings

from .plans import VmFiles, vm_dir
from .plans.shell import SH_CONSOLE_TAIL, sh
from .runners import FabricRunner, HostUnreachable, SshTarget
from .scripts import shell_text

log = logging.getLogger(__name__)

# Close codes a console WebSocket ends with (documented in the API schema and docs/consoles.md).
CLOSE_NOT_LOGGED_IN = 4401
CLOSE_NOT_FOUND = 4404  # no such VM, or another user's (the same answer, as in the API)
CLOSE_IDLE = 4408
CLOSE_NOT_RUNNING = 4409
CLOSE_GUEST_GONE = 4410  # the guest's serial socket closed (VM stopped or restarted by QEMU)
CLOSE_UNREACHABLE = 4502  # the worker or the guest's console socket cannot be reached
CLOSE_NO_RELAY = 4504  # the relay did not answer (a portal process died): reconnect

LEASE_SECONDS = 15  # a relay whose process died is forgotten after this long
READY_TIMEOUT = 20  # a viewer not welcomed by its relay within this long is closed (CLOSE_NO_RELAY)
LOCK_WAIT_SECONDS = 30  # how long the host-side command waits for the socket's lock
# Run on the worker: wait (bounded) for the console socket's lock, then bridge stdin/stdout to the socket.
SH_CONSOLE_RELAY = (
    '[ -S "$1" ] || { echo "no console socket $1 (is the VM running?)" >&2; exit 3; }; '
    'exec flock -w "$2" "$1.lock" socat - "UNIX-CONNECT:$1"'
)

# Process-wide counters (tests and the benchmark read them): SSH connections opened and closed.
stats: Counter[str] = Counter()


def group_name(vm_id: int) -> str:
    """The channel-layer group of a VM's viewers (they all receive its output)."""
    return f"console.vm{vm_id}"


@dataclass(frozen=True)
class ConsoleTarget:
    """Where a VM's serial console is: its worker (how to reach it) and its files there."""

    vm_id: int
    host: SshTarget
    files: VmFiles


def relay_argv(files: VmFiles) -> tuple[str, ...]:
    """The host-side command of a relay (data: quoted once, where it enters the remote shell)."""
    return sh(SH_CONSOLE_RELAY, "sp-console", files.console_sock, str(LOCK_WAIT_SECONDS))


def scrollback_argv(files: VmFiles, nbytes: int) -> tuple[str, ...]:
    return sh(SH_CONSOLE_TAIL, "sp-console-tail", files.console_log, str(nbytes))


class SerialLink:
    """The SSH side of a relay (blocking; the relay calls it from threads).

    ``argv``: the host-side command bridging the session to a socket (default: the
    serial console's, :func:`relay_argv`; the graphical console passes its own).
    """

    def __init__(self, target: ConsoleTarget, argv: tuple[str, ...] | None = None) -> None:
        self.target = target
        self.argv = argv if argv is not None else relay_argv(target.files)
        self.runner = FabricRunner(
            {target.host.name: target.host},
            known_hosts=settings.PROVISIONING_KNOWN_HOSTS,
            connect_timeout=settings.PROVISIONING_CONNECT_TIMEOUT,
        )
        self.transport = None
        self.chan = None
        self._closed = threading.Event()

    def open(self) -> None:
        """Connect (host key checked) and start socat on the guest's console socket. HostUnreachable if not."""
        conn = self.runner.connection(self.target.host.name)
        stats["connections"] += 1
        self.transport = conn.transport
        chan = self.transport.open_session(timeout=settings.PROVISIONING_CONNECT_TIMEOUT)
        chan.exec_command(shell_text(self.argv))
        self.chan = chan

    def scrollback(self, nbytes: int) -> bytes:
        """The last ``nbytes`` of the guest's console log (a second, short session)."""
        chan = self.transport.open_session(timeout=settings.PROVISIONING_CONNECT_TIMEOUT)
        try:
            chan.settimeout(10)
            chan.exec_command(shell_text(scrollback_argv(self.target.files, nbytes)))
            out = b""
            while chunk := chan.recv(65536):
                out += chunk
            return out
        finally:
            chan.close()

    def recv(self) -> bytes:
        """The guest's next output (blocking); b"" when the session ended."""
        return self.chan.recv(65536)

    def send(self, data: bytes) -> None:
        self.chan.sendall(data)

    def failure(self) -> str:
        """Why the session ended (its stderr), once it has."""
        try:
            err = self.chan.recv_stderr(4096).decode(errors="replace").strip()
        except Exception:  # a closed channel has nothing more to say
            err = ""
        return err or "the console session ended"

    def close(self) -> None:
        """Close the session (socat on the worker sees EOF and exits) and the connection."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self.chan is not None:
            self.chan.close()
        self.runner.close()
        if self.transport is not None:
            stats["closed"] += 1


def relay_key(vm_id: int) -> str:
    """The Redis key naming the channel of a VM's relay (under the channel layer's prefix)."""
    prefix = settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "sp-channels")
    return f"{prefix}:console-relay:vm{vm_id}"


def _redis() -> aioredis.Redis:
    return aioredis.from_url(settings.REDIS_URL)


# Delete the relay's key only if it still names this relay (a newer relay may have taken over).
_DELETE_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_EXPIRE_IF_OURS = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"
)

# Relays this process runs (by VM id): kept referenced so their tasks are not garbage collected.
_relays: dict[int, Relay] = {}


async def join(target: ConsoleTarget, *, viewer: str) -> str:
    """Attach a viewer (its channel name) to the VM's relay, starting one here if none runs; the relay's channel."""
    layer = get_channel_layer()
    key = relay_key(target.vm_id)
    client = _redis()
    try:
        for _ in range(5):
            channel = await client.get(key)
            if channel is not None:
                channel = channel.decode()
                break
            relay = Relay(target)
            channel = await relay.inbox.new_channel("console-relay.")
            if await client.set(key, channel, nx=True, ex=LEASE_SECONDS):
                relay.channel = channel
                _relays[target.vm_id] = relay
                relay.task = asyncio.ensure_future(relay.run())
                break
            await relay.inbox.close_pools()
        else:  # pragma: no cover - five lost races in a row
            raise RuntimeError("no relay could be registered")
    finally:
        await client.aclose()
    await layer.send(channel, {"type": "console.join", "viewer": viewer})
    return channel


async def leave(relay_channel: str, *, viewer: str) -> None:
    await get_channel_layer().send(relay_channel, {"type": "console.leave", "viewer": viewer})


async def send_input(relay_channel: str, data: bytes) -> None:
    await get_channel_layer().send(relay_channel, {"type": "console.input", "data": data})


class Relay:
    """The one relay of a VM (see the module docstring)."""

    def __init__(self, target: ConsoleTarget) -> None:
        self.target = target
        # The relay reads its messages through a channel layer of its own: channels-redis serialises a
        # process's reads of its "!" channels behind one lock, which the viewers' consumers hold.
        self.inbox = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        self.channel = ""
        self.group = group_name(target.vm_id)
        self.key = relay_key(target.vm_id)
        self.viewers: set[str] = set()
        self.link = SerialLink(target)
        self.task: asyncio.Future | None = None
        self.layer = get_channel_layer()

    async def _close_all(self, code: int, reason: str) -> None:
        await self.layer.group_send(self.group, {"type": "console.closed", "code": code, "reason": reason})

    async def run(self) -> None:
        """Open the link, then serve joins, input and leaves until the end (module docstring)."""
        client = _redis()
        pump = renew = None
        try:
            try:
                await asyncio.to_thread(self.link.open)
            except HostUnreachable as exc:
                await self._fail_waiting(f"Console unreachable: {exc}"[:120])
                return
            except Exception as exc:
                log.exception("console relay of vm%s: cannot open", self.target.vm_id)
                await self._fail_waiting(f"Console unreachable: {type(exc).__name__}: {exc}"[:120])
                return
            pump = asyncio.ensure_future(self._pump())
            renew = asyncio.ensure_future(self._renew(client))
            await self._serve(pump)
        except Exception as exc:  # a task's exception is never seen otherwise: log it, close the viewers
            log.exception("console relay of vm%s failed", self.target.vm_id)
            with contextlib.suppress(Exception):
                await self._close_all(CLOSE_UNREACHABLE, f"Console relay failed: {type(exc).__name__}"[:120])
        finally:
            for task in (pump, renew):
                if task is not None:
                    task.cancel()
            await asyncio.to_thread(self.link.close)
            with contextlib.suppress(Exception):
                await client.eval(_DELETE_IF_OURS, 1, self.key, self.channel)
            await client.aclose()
            with contextlib.suppress(Exception):
                await self.inbox.close_pools()
            if _relays.get(self.target.vm_id) is self:
                del _relays[self.target.vm_id]

    async def _fail_waiting(self, reason: str) -> None:
        """The link could not open: close every viewer (those that joined meanwhile too)."""
        await self._close_all(CLOSE_UNREACHABLE, reason)

    async def _serve(self, pump: asyncio.Future) -> None:
        idle = settings.CONSOLE_IDLE_TIMEOUT
        last_input = time.monotonic()
        receive: asyncio.Future | None = None
        try:
            while True:
                receive = receive or asyncio.ensure_future(self.inbox.receive(self.channel))
                remaining = max(0.0, last_input + idle - time.monotonic())
                done, _ = await asyncio.wait({receive, pump}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if pump in done:
                    await self._close_all(CLOSE_GUEST_GONE, self.link.failure()[:120])
                    return
                if not done:
                    await self._close_all(CLOSE_IDLE, f"Closed after {idle} s without a keystroke.")
                    return
                message, receive = receive.result(), None
                kind = message.get("type")
                if kind == "console.join":
                    self.viewers.add(message["viewer"])
                    await self._welcome(message["viewer"])
                elif kind == "console.leave":
                    self.viewers.discard(message["viewer"])
                    if not self.viewers:
                        return
                elif kind == "console.input":
                    last_input = time.monotonic()
                    await asyncio.to_thread(self.link.send, message["data"])
        finally:
            if receive is not None:
                receive.cancel()

    async def _welcome(self, viewer: str) -> None:
        """A new viewer: the recent scrollback, then "live" (what follows comes from the group)."""
        try:
            tail = await asyncio.to_thread(self.link.scrollback, settings.CONSOLE_SCROLLBACK_BYTES)
        except Exception as exc:  # the live console still works without its history
            tail = f"(no scrollback: {exc})\r\n".encode()
        await self.layer.send(viewer, {"type": "console.ready", "scrollback": tail})

    async def _pump(self) -> None:
        """The guest's output to every viewer, as it comes; returns when the session ends.

        A thread of its own blocks on the SSH channel (never one of the loop's shared
        executor threads, which a few open consoles would use up).
        """
        chunks = read_in_thread(self.link, name=f"sp-console-vm{self.target.vm_id}")
        while data := await chunks.get():
            await self.layer.group_send(self.group, {"type": "console.output", "data": data})

    async def _renew(self, client: aioredis.Redis) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            await client.eval(_EXPIRE_IF_OURS, 1, self.key, self.channel, LEASE_SECONDS)


def console_target(*, host, state_dir: str, vm_id: int) -> ConsoleTarget:
    """The console of VM ``vm_id`` placed on ``host`` (an inventory Host row)."""
    return ConsoleTarget(
        vm_id=vm_id,
        host=SshTarget(host.name, host.management_address, host.ssh_port, host.ssh_user, host.ssh_key_path),
        files=VmFiles(vm_dir(state_dir, vm_id)),
    )


def read_in_thread(link, *, name: str) -> asyncio.Queue[bytes]:
    """What ``link.recv()`` returns, read on a thread of its own into a queue of the running loop; b"" at the end.

    A thread of its own blocks on the SSH channel (never one of the loop's shared executor threads,
    which a few open consoles would use up); a closed or broken channel ends the stream like EOF.
    """
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    def put(data: bytes) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody to tell
            loop.call_soon_threadsafe(chunks.put_nowait, data)

    def read() -> None:
        try:
            while data := link.recv():
                put(data)
        except Exception:  # a closed or broken channel ends the session like EOF
            log.debug("%s: read ended", name, exc_info=True)
        put(b"")

    threading.Thread(target=read, name=name, daemon=True).start()
    return chunks
