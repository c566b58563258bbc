"""Talk to a lab guest's serial console: run a shell command, read its output and exit code.

A guest's serial port is a QEMU unix socket on its worker,
``{state_dir}/vms/vm{vm_id}/console.sock`` (docs/CONTRACTS.md), next to
``console.log`` where QEMU copies everything the guest printed. The lab guest
keeps a root shell on that console. QEMU accepts one client at a time, so
commands to one guest are serialised with a lock file next to the socket; the
portal's console relay (provisioning.consoles) takes the same lock while a browser
viewer is connected, and a command here then waits (at most its timeout) and fails
with "console busy" instead of typing into a user's session.

The lab's hosts share the portal machine's filesystem, so the socket is
reachable directly; on a production host the same socket is reached over SSH.
"""

from __future__ import annotations

import fcntl
import re
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

# Not anchored: a report can start right after the shell prompt on the same line.
SP_LINE_RE = re.compile(r"SP: (.*)$", re.MULTILINE)
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class ConsoleError(RuntimeError):
    """The console could not be reached, or the command did not finish in time."""


@dataclass(frozen=True)
class ConsoleResult:
    """What a command printed on the guest's console and its exit status."""

    output: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def vm_dir(state_dir: str | Path, vm_id: int) -> Path:
    """The VM's directory on its worker (``{state_dir}/vms/vm{id}``)."""
    return Path(state_dir) / "vms" / f"vm{vm_id}"


def console_socket(state_dir: str | Path, vm_id: int) -> Path:
    return vm_dir(state_dir, vm_id) / "console.sock"


def console_log(state_dir: str | Path, vm_id: int) -> Path:
    return vm_dir(state_dir, vm_id) / "console.log"


def sp_lines(text: str) -> list[str]:
    """The guest's ``SP:`` report lines in ``text`` (prefix removed, in order)."""
    return [line.strip() for line in SP_LINE_RE.findall(text.replace("\r", ""))]


def read_log(state_dir: str | Path, vm_id: int) -> str:
    """Everything the guest printed so far ('' before it booted)."""
    try:
        return console_log(state_dir, vm_id).read_bytes().decode(errors="replace").replace("\r", "")
    except FileNotFoundError:
        return ""


def wait_for_line(
    state_dir: str | Path, vm_id: int, pattern: str, *, timeout: float = 60, interval: float = 0.2
) -> re.Match[str]:
    """Wait until the console log has a line matching ``pattern`` (a regex); return the match."""
    regex = re.compile(pattern, re.MULTILINE)
    deadline = time.monotonic() + timeout
    while True:
        if match := regex.search(read_log(state_dir, vm_id)):
            return match
        if time.monotonic() > deadline:
            tail = "\n".join(read_log(state_dir, vm_id).splitlines()[-15:])
            raise ConsoleError(f"vm{vm_id}: no line matching {pattern!r} after {timeout}s; console tail:\n{tail}")
        time.sleep(interval)


def _lock(lock, lock_path: Path, timeout: float) -> None:
    """Take the socket's lock, waiting at most ``timeout`` (a relay may hold it while viewers are connected)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise ConsoleError(
                    f"console busy: {lock_path} held for {timeout}s (a browser console of this VM is open?)"
                ) from None
            time.sleep(0.1)


def run_command(socket_path: str | Path, command: str, *, timeout: float = 30) -> ConsoleResult:
    """Run ``command`` in the guest's console shell and return its output and exit code.

    The end of the output is found by a marker the shell prints after the
    command; the marker is split in the typed line (``EN''D...``) so the echo of
    the command itself never matches.
    """
    socket_path = Path(socket_path)
    if "\n" in command:
        raise ValueError("one command line at a time")
    token = uuid.uuid4().hex[:10]
    marker = f"SPEND{token}"
    typed_marker = f"SP''END{token}"
    # Ctrl-C first: a clean prompt even if an earlier command (or half a line) is still pending.
    line = f"\x03{command}; echo {typed_marker} rc=$?\n"
    end_re = re.compile(re.escape(marker) + r" rc=(\d+)")
    lock_path = socket_path.with_name(socket_path.name + ".lock")
    try:
        lock = open(lock_path, "a+")
    except OSError as exc:
        raise ConsoleError(f"cannot lock {lock_path}: {exc}") from exc
    with lock:
        _lock(lock, lock_path, timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(5)
            sock.connect(str(socket_path))
            # Drop anything already buffered, then start on a fresh prompt line.
            sock.settimeout(0.05)
            try:
                while sock.recv(65536):
                    pass
            except (TimeoutError, BlockingIOError):
                pass
            sock.sendall(line.encode())
            buffer = b""
            deadline = time.monotonic() + timeout
            sock.settimeout(0.2)
            while time.monotonic() < deadline:
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    chunk = b""
                buffer += chunk
                text = buffer.decode(errors="replace")
                if end_re.search(text):
                    break
            else:
                raise ConsoleError(f"{command!r} did not finish within {timeout}s on {socket_path}")
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ConsoleError(f"console {socket_path} is not available: {exc}") from exc
        finally:
            sock.close()
    text = ANSI_RE.sub("", buffer.decode(errors="replace")).replace("\r", "")
    match = end_re.search(text)
    assert match is not None
    body = text[: match.start()]
    # Drop everything up to the (last) echo of the command line: a line typed before
    # the shell started is echoed twice, once by the tty and once by the shell.
    echoed = body.rfind(typed_marker)
    if echoed >= 0:
        newline = body.find("\n", echoed)
        body = body[newline + 1 :] if newline >= 0 else ""
    # The guest's own reports (SP: lines) may land in the middle of a command's output.
    lines = []
    for line in body.split("\n"):
        if (at := line.find("SP: ")) >= 0:
            line = line[:at]
            if not line.strip():
                continue
        lines.append(line)
    return ConsoleResult(output="\n".join(lines).strip("\n"), exit_code=int(match.group(1)))
