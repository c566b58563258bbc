"""``slicectl console NAME VM``: the terminal attached to a VM's serial console, over the portal's WebSocket.

The protocol is the browser's (docs/consoles.md): binary frames both ways are the
console's bytes (the scrollback first), a text frame ``{"event": "live"}`` ends
the scrollback, and ``{"event": "closed", "code": N, "reason": ...}`` comes before
the server closes (daphne drops a close frame's reason). slicectl authenticates
with its API token (``Authorization: Token``), sends no Origin, and maps the close
codes to its exit codes (:data:`CLOSE_EXITS`).

On a terminal, stdin is put in raw mode (Ctrl-C, arrows, tab reach the guest)
and restored on every way out; Ctrl-] detaches. Piped stdin is sent once the
console is live, then output is printed until the portal closes the console or
``--timeout`` seconds pass. ``websockets`` is imported here only, so the other
commands work without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .client import CliError, Exit

DETACH_BYTE = b"\x1d"  # Ctrl-]: what telnet and virsh console use
DETACH_KEY = "Ctrl-]"
OPEN_TIMEOUT = 15.0
MAX_FRAME = 16 * 1024 * 1024  # the scrollback comes as one frame (CONSOLE_SCROLLBACK_BYTES, 16 KiB by default)
READ_CHUNK = 4096

# The portal's close codes (docs/consoles.md) -> (exit code, what it means).
CLOSE_EXITS: dict[int, tuple[int, str]] = {
    4401: (Exit.AUTH, "not logged in, or the token was refused"),
    4404: (Exit.NOT_FOUND, "no such VM"),
    4409: (Exit.REFUSED, "the VM is not running"),
    4408: (Exit.CLOSED, "idle: nobody typed for the portal's CONSOLE_IDLE_TIMEOUT"),
    4410: (Exit.CLOSED, "the guest's console closed (the VM stopped)"),
    4502: (Exit.UNREACHABLE, "the worker or the console socket is unreachable"),
    4504: (Exit.UNREACHABLE, "the console relay did not answer (reconnect)"),
}


@dataclass
class Outcome:
    """How a console session ended: the exit code and what to tell the user (stderr)."""

    code: int
    message: str


def websocket_url(portal_url: str, console_url: str) -> str:
    """The console's ws:// (or wss://) URL: the VM's ``console_url`` path on the portal's host."""
    if console_url.startswith(("ws://", "wss://")):
        return console_url
    parts = urllib.parse.urlsplit(portal_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme)
    if scheme is None:
        raise CliError(f"The portal URL must be http:// or https://, not {portal_url!r}.", Exit.USAGE)
    return urllib.parse.urlunsplit((scheme, parts.netloc, console_url, "", ""))


def closed_outcome(code: int | None, reason: str) -> Outcome:
    """The exit code and message for a console the portal closed (or a connection that dropped)."""
    if code in CLOSE_EXITS:
        exit_code, meaning = CLOSE_EXITS[code]
        return Outcome(exit_code, f"console closed: {reason or meaning} (code {code})")
    if code is None or code == 1006:
        return Outcome(Exit.UNREACHABLE, "console connection lost (no close frame)")
    return Outcome(Exit.UNREACHABLE, f"console closed by the portal: {reason or 'no reason given'} (code {code})")


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal on ``fd`` in raw mode inside the block; its settings restored on any way out.

    SIGTERM and SIGHUP become :class:`SystemExit` while it is raw, so the ``finally``
    runs for them too (a killed slicectl must not leave the shell without echo).
    """
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    previous = {}

    def leave(signum, _frame):
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, leave)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Session:
    """One attached console: the WebSocket read here, stdin pumped to it by a thread once live."""

    def __init__(self, ws, *, stdin_fd: int | None, tty: bool, stdout: BinaryIO, timeout: float | None):
        self.ws = ws
        self.stdin_fd = stdin_fd
        self.tty = tty
        self.stdout = stdout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.detached = threading.Event()
        self.said: dict | None = None  # the server's {"event": "closed", ...} frame

    def pump_stdin(self) -> None:
        """stdin -> WebSocket until end of file (piped) or Ctrl-] (a terminal); the thread's body."""
        from websockets.exceptions import ConnectionClosed

        if self.stdin_fd is None:
            return
        try:
            while True:
                chunk = os.read(self.stdin_fd, READ_CHUNK)
                if not chunk:
                    return  # piped input ended: keep printing the output until the end
                if self.tty and DETACH_BYTE in chunk:
                    before = chunk.split(DETACH_BYTE, 1)[0]
                    if before:
                        self.ws.send(before)
                    self.detached.set()
                    self.ws.close()
                    return
                self.ws.send(chunk)
        except (ConnectionClosed, OSError):
            return  # the console ended: the reading side reports how

    def run(self) -> Outcome:
        """Relay until the portal closes the console, the user detaches or the timeout passes."""
        from websockets.exceptions import ConnectionClosed

        live = False
        while True:
            wait = None if self.deadline is None else self.deadline - time.monotonic()
            if wait is not None and wait <= 0:
                self.ws.close()
                if not live:
                    return Outcome(Exit.UNREACHABLE, "the console did not become live before --timeout")
                return Outcome(Exit.OK, "timeout reached: detached")
            try:
                frame = self.ws.recv(timeout=wait)
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                if self.detached.is_set():
                    return Outcome(Exit.OK, "detached")
                code = exc.rcvd.code if exc.rcvd is not None else None
                reason = (exc.rcvd.reason if exc.rcvd is not None else "") or ""
                if self.said and self.said.get("code") == code:
                    reason = self.said.get("reason") or reason
                return closed_outcome(code, reason)
            if isinstance(frame, bytes):
                self.stdout.write(frame)
                self.stdout.flush()
                continue
            event = _event(frame)
            if event.get("event") == "live" and not live:
                live = True
                threading.Thread(target=self.pump_stdin, name="slicectl-stdin", daemon=True).start()
            elif event.get("event") == "closed":
                self.said = event


def _event(text: str) -> dict:
    try:
        event = json.loads(text)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


def _connect(url: str, token: str):
    """Open the WebSocket with the token; handshake failures become :class:`CliError` with an exit code."""
    try:
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
        from websockets.sync.client import connect
    except ImportError as exc:
        raise CliError("slicectl console needs the websockets package: pip install websockets", Exit.USAGE) from exc
    try:
        return connect(
            url,
            additional_headers={"Authorization": f"Token {token}"},
            user_agent_header="slicectl",
            open_timeout=OPEN_TIMEOUT,
            max_size=MAX_FRAME,
        )
    except InvalidURI as exc:
        raise CliError(f"Not a WebSocket URL: {url}", Exit.USAGE) from exc
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (403, 404):
            # 404: a server without the WebSocket route (WSGI only); 403: one that refuses tokens there.
            raise CliError(
                f"This portal does not serve consoles to slicectl (HTTP {status} at {url}).", Exit.UNSUPPORTED
            ) from exc
        raise CliError(f"The console handshake failed: HTTP {status} at {url}.", Exit.UNREACHABLE) from exc
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        raise CliError(f"Cannot reach the console at {url}: {exc}", Exit.UNREACHABLE) from exc


def attach(
    url: str,
    token: str,
    *,
    label: str,
    timeout: float | None = None,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    stderr=None,
) -> int:
    """Attach stdin/stdout to the console at ``url``; answer slicectl's exit code (messages on stderr)."""
    stdin = sys.stdin.buffer if stdin is None and sys.stdin is not None else stdin
    stdout = stdout or sys.stdout.buffer
    stderr = stderr or sys.stderr
    try:
        stdin_fd = stdin.fileno() if stdin is not None else None
    except (OSError, ValueError):
        stdin_fd = None
    tty = stdin_fd is not None and os.isatty(stdin_fd)
    ws = _connect(url, token)
    with ws:
        if tty:
            stderr.write(f"Connected to the console of {label}. Detach: {DETACH_KEY}\n")
        else:
            until = f"{timeout:g} s pass" if timeout is not None else "the portal closes it"
            stderr.write(f"Connected to the console of {label}: sending stdin, printing output until {until}.\n")
        stderr.flush()
        session = Session(ws, stdin_fd=stdin_fd, tty=tty, stdout=stdout, timeout=timeout)
        try:
            with raw_terminal(stdin_fd) if tty else contextlib.nullcontext():
                outcome = session.run()
        except KeyboardInterrupt:
            outcome = Outcome(Exit.INTERRUPTED, "interrupted")
        except BrokenPipeError:
            # stdout's reader is gone (`| head`): nobody wants more output; not a failure.
            tty = False
            outcome = Outcome(Exit.OK, "output closed: detached")
    if tty:
        stdout.write(b"\r\n")  # the guest's cursor may be mid-line
        stdout.flush()
    stderr.write(f"slicectl: {outcome.message}\n")
    return outcome.code
