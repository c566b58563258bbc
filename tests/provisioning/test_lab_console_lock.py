"""The lab console and the portal's console relay share a guest's serial socket through one lock file."""

import fcntl

import pytest

from provisioning.lab.console import ConsoleError, run_command


def test_a_command_waits_for_a_relay_holding_the_socket_then_says_busy(tmp_path):
    sock = tmp_path / "console.sock"
    with open(tmp_path / "console.sock.lock", "a+") as held:  # what `flock console.sock.lock socat ...` holds
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ConsoleError, match="console busy"):
            run_command(sock, "true", timeout=0.3)
