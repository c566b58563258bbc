"""Local system calls for the lab (root on the portal machine): commands, namespaces, processes.

The lab builds its hosts with local commands; the provisioning engine never
uses this module (it reaches the lab hosts over SSH like any production host).
Processes are only ever stopped by PID: from the lab's own pid files (checked
against the process's command line first) or from inside the lab's own
namespaces, never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path


class LabCommandError(RuntimeError):
    """A lab command failed; the message names the command and its stderr."""


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 30,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (inside network namespace ``netns`` when given) and return the result."""
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    full_env = {**os.environ, **env} if env else None
    try:
        result = subprocess.run(
            full, capture_output=True, text=True, env=full_env, input=input, timeout=timeout, check=False, cwd=cwd
        )
    except subprocess.TimeoutExpired as exc:
        raise LabCommandError(f"timed out after {timeout}s: {' '.join(full)}") from exc
    if check and result.returncode != 0:
        raise LabCommandError(f"`{' '.join(full)}` exited {result.returncode}: {result.stderr.strip()}")
    return result


def ok(argv: Sequence[str], *, netns: str | None = None, timeout: float = 10) -> bool:
    """True when ``argv`` exits 0."""
    return run(argv, netns=netns, check=False, timeout=timeout).returncode == 0


# --- namespaces and links --------------------------------------------------------------

NETNS_DIR = Path("/run/netns")


def namespaces() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir())


def namespace_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def namespace_pids(name: str) -> list[int]:
    """PIDs of the processes running inside namespace ``name``."""
    result = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


def link_exists(name: str, *, netns: str | None = None) -> bool:
    if netns is None:
        return Path("/sys/class/net", name).exists()
    return ok(["ip", "link", "show", "dev", name], netns=netns)


def delete_link(name: str) -> None:
    """Delete a root-namespace link if it exists."""
    if link_exists(name):
        run(["ip", "link", "del", "dev", name], check=False)


def disable_ipv6(ifname: str) -> None:
    """Keep a root-namespace lab link quiet (no router solicitations, no DAD)."""
    path = Path("/proc/sys/net/ipv6/conf", ifname, "disable_ipv6")
    if path.exists():
        path.write_text("1\n")


# --- processes ------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def cmdline(pid: int) -> str:
    """The process's command line, arguments joined by spaces ('' when gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pid_from_file(path: Path, *, must_mention: str) -> int | None:
    """The live PID recorded in ``path`` whose command line mentions ``must_mention``.

    The check guards against a recycled PID: every lab process has a lab path
    on its command line.
    """
    pid = read_pid_file(path)
    if pid and pid_alive(pid) and must_mention in cmdline(pid):
        return pid
    return None


def terminate(pids: Iterable[int], *, timeout: float = 3.0) -> None:
    """SIGTERM the PIDs, wait up to ``timeout`` seconds, then SIGKILL the survivors."""
    pids = {p for p in pids if p and p != os.getpid()}
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if pid_alive(p)}
        if pids:
            time.sleep(0.02)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 2
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if pid_alive(p)}
        if pids:
            time.sleep(0.02)


def wait_for(predicate, *, timeout: float, interval: float = 0.02, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; LabCommandError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise LabCommandError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def stop_process_group(process: subprocess.Popen, *, timeout: float) -> None:
    """Stop a process we started in its own session (by its PID, never by name): SIGTERM to its
    group, SIGKILL after ``timeout`` s, then SIGKILL to whatever of the group is left (a work horse)."""
    pid = process.pid
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            process.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
