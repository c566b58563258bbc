"""Benchmark 6 — keystroke-to-echo latency of a lab guest's serial console: through the portal's relay vs socat.

Relay: a real WebSocket (``websockets``, the API token in the handshake, as
``slicectl console``) to the portal's ASGI server (``daphne portal.asgi:application``,
a subprocess on a free 127.0.0.1 port, Redis channel layer) -> the VM's relay -> SSH
to the worker -> ``socat`` on the guest's ``console.sock``. One keystroke at a time:
the clock runs from sending one character to receiving its echo from the guest's
shell (busybox ash's line editor echoes it), 200 times.

Floor: the same 200 keystrokes with ``socat - UNIX-CONNECT:.../console.sock`` run
directly on the worker (``nsenter`` into the lab host's namespaces, under the same
lock file the relay takes): no portal, no WebSocket, no SSH.

Prints p50/p95/mean/max per path and an ``ADDED`` line: relay minus socat.

Run (root):  .venv/bin/python bench/console_latency.py [--keystrokes 200]
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import REPO, log, machine, make_user, percentile, redis_url, scratch_database, table
from labkit import LabSession, RqWorker, api_action, api_client, child_env, host_pid, require_root, wait_deployment

ALPHABET = b"abcdefghijklmnopqrstuvwxyz"
KILL_LINE = b"\x15"  # Ctrl-U: the shell's line editor empties the line (untimed, every CLEAR_EVERY keys)
CLEAR_EVERY = 40
ECHO_TIMEOUT = 10.0
DAPHNE_APP = "portal.asgi:application"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daphne:
    """``daphne portal.asgi:application`` on a free port (scratch DB, bench Redis), stopped by PID."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Daphne:
        from django.conf import settings

        env = child_env(
            DATABASE_URL=os.environ["DATABASE_URL"],
            REDIS_URL=redis_url(),
            CHANNELS_PREFIX=f"sp-bench-{uuid.uuid4().hex[:8]}",
            SECRET_KEY=settings.SECRET_KEY,
        )
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("daphne")), "-b", "127.0.0.1", "-p", str(self.port), DAPHNE_APP],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"daphne exited; see {self.log_path}") from None
                time.sleep(0.2)
        raise RuntimeError("daphne did not listen within 60 s")

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.terminate()  # by its PID
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
            self._log.close()


def measure(send, receive, count: int) -> list[float]:
    """Seconds from sending each character to seeing it come back; ``receive(timeout)`` -> bytes."""
    samples = []
    for i in range(count):
        if i % CLEAR_EVERY == 0:
            send(KILL_LINE)
            drain(receive, 0.3)
        key = ALPHABET[i % len(ALPHABET) : i % len(ALPHABET) + 1]
        started = time.perf_counter()
        send(key)
        seen = b""
        while key not in seen:
            left = started + ECHO_TIMEOUT - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"no echo of {key!r} within {ECHO_TIMEOUT} s (got {seen!r})")
            seen += receive(left)
        samples.append(time.perf_counter() - started)
    send(KILL_LINE)
    return samples


def drain(receive, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        receive(left)


def through_relay(port: int, vm_id: int, token: str, count: int) -> list[float]:
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{port}/ws/vms/{vm_id}/console/"
    with connect(url, additional_headers={"Authorization": f"Token {token}"}, open_timeout=30) as ws:
        while True:  # the scrollback, then {"event": "live"}
            frame = ws.recv(timeout=30)
            if isinstance(frame, str):
                if '"live"' in frame:
                    break
                raise RuntimeError(f"console refused: {frame}")

        def receive(timeout: float) -> bytes:
            try:
                frame = ws.recv(timeout=timeout)
            except TimeoutError:
                return b""
            return frame if isinstance(frame, bytes) else b""

        return measure(ws.send, receive, count)


def through_socat(lab: LabSession, host: str, sock: str, count: int) -> list[float]:
    enter = ("nsenter", "--target", str(host_pid(lab, host)), "--net", "--mount")
    proc = subprocess.Popen(
        [*enter, "flock", "-w", "30", f"{sock}.lock", "socat", "-", f"UNIX-CONNECT:{sock}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        bufsize=0,
    )
    fd = proc.stdout.fileno()

    def send(data: bytes) -> None:
        proc.stdin.write(data)

    def receive(timeout: float) -> bytes:
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 65536) if ready else b""

    try:
        return measure(send, receive, count)
    finally:
        proc.stdin.close()
        proc.terminate()  # by its PID
        proc.wait(timeout=10)


def wait_socket_free(sock: str, timeout: float = 30) -> None:
    """Until nothing holds the console socket's lock (the relay's socat exited)."""
    import fcntl

    deadline = time.monotonic() + timeout
    with open(f"{sock}.lock", "a+") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(lock, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{sock} still locked after {timeout} s") from None
                time.sleep(0.1)


def row(name: str, samples: list[float]) -> list[object]:
    ms = [s * 1000 for s in samples]
    return [name, len(ms), percentile(ms, 50), percentile(ms, 95), statistics.mean(ms), max(ms)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keystrokes", type=int, default=200)
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up if this run brought it up")
    parser.add_argument("--take-over-lab", action="store_true", help="rebuild the lab even if another LAB_DIR has it")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the scratch database")
    args = parser.parse_args()
    require_root()

    print("# Benchmark 6: serial console keystroke-to-echo latency, relay (WebSocket) vs socat on the worker")
    print(f"# machine: {machine()}")
    with (
        scratch_database("console_latency", keep=args.keep_db),
        LabSession(keep_lab=args.keep_lab, take_over=args.take_over_lab) as lab,
        tempfile.TemporaryDirectory(prefix="bench-console-") as tmp,
        RqWorker(Path(tmp) / "rqworker.log") as worker,
    ):
        from rest_framework.authtoken.models import Token

        from inventory.models import Host
        from provisioning.lab import console
        from slices import services
        from slices.models import VM

        lab.probe_accel()
        user = make_user("bench-console", max_vms=2)
        token = Token.objects.create(user=user).key
        worker_row = Host.objects.get(name="worker1")
        slice_obj = services.slice_create(owner=user, name="console-latency")
        vm = services.vm_create(slice_obj=slice_obj, name="vm1", data_interfaces_count=0, host=worker_row)
        client = api_client(user)
        dep = wait_deployment(api_action(client, slice_obj.pk, "deploy"), worker)
        if dep.status != "succeeded":
            raise RuntimeError(f"deploy failed: {dep.error}")
        try:
            console.wait_for_line(worker_row.state_dir, vm.pk, r"SP: READY", timeout=180)
            log(f"vm{vm.pk} ready on worker1 ({VM.objects.get(pk=vm.pk).status})")
            sock = str(console.console_socket(worker_row.state_dir, vm.pk))
            with Daphne(Path(tmp) / "daphne.log") as daphne:
                relay = through_relay(daphne.port, vm.pk, token, args.keystrokes)
                log(f"relay: {args.keystrokes} keystrokes, p50 {percentile(relay, 50) * 1000:.1f} ms")
            wait_socket_free(sock)
            direct = through_socat(lab, "worker1", sock, args.keystrokes)
            log(f"socat: {args.keystrokes} keystrokes, p50 {percentile(direct, 50) * 1000:.1f} ms")
        finally:
            dep = wait_deployment(api_action(client, slice_obj.pk, "destroy"), worker)
            log(f"destroy: {dep.status}")
        print()
        rows = [row("relay (WebSocket -> daphne -> SSH -> socat)", relay), row("socat on the worker", direct)]
        print(table(["path", "keystrokes", "p50 ms", "p95 ms", "mean ms", "max ms"], rows))
        added50 = (percentile(relay, 50) - percentile(direct, 50)) * 1000
        added95 = (percentile(relay, 95) - percentile(direct, 95)) * 1000
        print()
        print(f"ADDED by the relay: p50 {added50:.1f} ms, p95 {added95:.1f} ms per keystroke (relay minus socat)")
        print("# one character at a time, clock from send to its echo by the guest's shell (TCG guest)")


if __name__ == "__main__":
    main()
