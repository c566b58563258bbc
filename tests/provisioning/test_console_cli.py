"""``slicectl console`` end to end: daphne (HTTP API and WebSocket), the relay, a real sshd, a fake guest.

slicectl runs as a subprocess (``python -m slicectl``) with an API token; the portal
is daphne in a subprocess on this test's database; the guest is a shell behind
socat on the VM's console socket (consoles_support.running_vm), which does not echo,
so a ``42`` in the output is the guest's answer to ``expr 6 \\* 7``.
"""

import io
import os
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from slicectl import console
from slicectl.client import Exit
from slices.models import VM

from .conftest import needs_sshd
from .consoles_support import logins

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    needs_sshd,
    pytest.mark.timeout(180),
    pytest.mark.usefixtures("console_layer"),
]


def key(user) -> str:
    return Token.objects.get_or_create(user=user)[0].key


def slicectl_env(daphne: str, token: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLICECTL_")}
    return {**env, "SLICECTL_URL": f"http://{daphne}", "SLICECTL_TOKEN": token, "SLICECTL_CONFIG": "/nonexistent"}


def slicectl(daphne: str, token: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "slicectl", *args],
        cwd=REPO,
        env=slicectl_env(daphne, token),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_piped_commands_get_the_guests_answer(running_vm, user, sshd, daphne):
    before = logins(sshd)
    started = time.monotonic()
    r = slicectl(
        daphne, key(user), "console", running_vm.slice.name, running_vm.name, "--timeout", "5", stdin="expr 6 \\* 7\n"
    )
    took = time.monotonic() - started
    assert r.returncode == Exit.OK, r.stderr
    assert "Linux version 6.1 booting" in r.stdout  # the scrollback first
    assert "42" in r.stdout.split("login prompt from the past", 1)[1]  # then the guest's answer (no echo on it)
    assert "Connected to the console of vm1" in r.stderr and "timeout reached" in r.stderr
    assert 5 <= took < 30
    assert logins(sshd) == before + 1


def test_refusals_map_to_exit_codes(running_vm, user, other_user, sshd, daphne):
    before = logins(sshd)
    name, vm = running_vm.slice.name, running_vm.name
    # Through the CLI: another user's token does not even find the slice (the API's 404).
    r = slicectl(daphne, key(other_user), "console", name, vm, "--timeout", "5")
    assert r.returncode == Exit.NOT_FOUND and f"No slice named {name!r}" in r.stderr
    r = slicectl(daphne, "0" * 40, "console", name, vm, "--timeout", "5")
    assert r.returncode == Exit.AUTH
    r = slicectl(daphne, key(user), "console", name, "vm9")
    assert r.returncode == Exit.NOT_FOUND and "no VM named 'vm9'" in r.stderr

    # The WebSocket's own answers, each mapped to its exit code (the same function the CLI runs).
    url = console.websocket_url(f"http://{daphne}", f"/ws/vms/{running_vm.pk}/console/")

    def attach(token: str) -> tuple[int, str]:
        err = io.StringIO()
        code = console.attach(url, token, label="vm1", timeout=10, stdin=io.BytesIO(), stdout=io.BytesIO(), stderr=err)
        return code, err.getvalue()

    code, said = attach(key(other_user))
    assert code == Exit.NOT_FOUND and "No such VM. (code 4404)" in said
    code, said = attach("0" * 40)
    assert code == Exit.AUTH and "Invalid token. (code 4401)" in said
    VM.objects.filter(pk=running_vm.pk).update(status=VM.Status.STOPPED)
    code, said = attach(key(user))
    assert code == Exit.REFUSED and "(code 4409)" in said
    r = slicectl(daphne, key(user), "console", name, vm)  # the CLI says so without connecting
    assert r.returncode == Exit.REFUSED and "is stopped, not running" in r.stderr
    assert logins(sshd) == before  # none of them reached SSH


def read_until(fd: int, needle: bytes, timeout: float = 20) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not seen; got {seen!r}"
        if select.select([fd], [], [], left)[0]:
            seen += os.read(fd, 4096)
    return seen


def test_on_a_terminal_raw_mode_ctrl_bracket_detaches_and_the_terminal_is_restored(running_vm, user, daphne):
    args = [sys.executable, "-m", "slicectl", "console", running_vm.slice.name, running_vm.name]
    env = slicectl_env(daphne, key(user))

    for ending in ("detach", "sigterm"):
        master, slave = os.openpty()
        cooked = termios.tcgetattr(slave)
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdin=slave, stdout=slave, stderr=subprocess.PIPE)
        try:
            read_until(master, b"login prompt from the past")  # the scrollback: the terminal is raw by now
            assert not termios.tcgetattr(slave)[3] & termios.ECHO
            if ending == "detach":
                os.write(master, b"expr 6 \\* 7\n")
                assert b"42" in read_until(master, b"42")
                os.write(master, b"\x1d")  # Ctrl-]
                assert proc.wait(timeout=20) == Exit.OK
                said = proc.stderr.read()
                assert b"Detach: Ctrl-]" in said and b"slicectl: detached" in said
            else:
                proc.send_signal(signal.SIGTERM)  # by its PID
                assert proc.wait(timeout=20) == 128 + signal.SIGTERM
            assert termios.tcgetattr(slave) == cooked  # echo and line editing back, whatever the ending
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
            os.close(master)
            os.close(slave)
