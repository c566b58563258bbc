"""Chromium: the Screen page draws a real QEMU display through the portal (noVNC, the VNC WebSocket, SSH, socat).

No lab: a QEMU without a disk (its BIOS screen: text on black) listens on the VM's
``vnc.sock``; the worker is the provisioning tests' sshd on 127.0.0.1; the page and
the WebSocket come from the portal's own ASGI server (``manage.py runserver``,
daphne) on the test database. The lab's own guest is seen in test_consoles_lab.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from django.conf import settings as django_settings
from django.test import Client
from playwright.sync_api import expect

from tests.browser.conftest import REPO, TIMEOUT_MS, shot
from tests.provisioning.conftest import host_dirs, ssh_hosts, sshd  # noqa: F401 (fixtures)
from tests.provisioning.consoles_support import console_layer, running_vm  # noqa: F401 (fixtures)
from tests.workers import _database_url

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.timeout(180)]

QEMU = "qemu-system-x86_64"
BIOS_ONLY = (QEMU, "-nodefaults", "-no-user-config", "-accel", "tcg", "-m", "32", "-vga", "std", "-display", "none")
# How many colours the noVNC canvas shows (every 4th pixel): 1 is a blank screen.
CANVAS_COLOURS = """() => {
  const canvas = document.querySelector("#screen canvas");
  if (!canvas || !canvas.width || !canvas.height) return 0;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length; i += 16) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  return seen.size;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def portal_server(sshd, console_layer, settings, tmp_path):  # noqa: F811
    """``manage.py runserver`` (daphne: pages, static files, WebSockets) on the test database; its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CHANNELS_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        "PROVISIONING_KNOWN_HOSTS": str(sshd.known_hosts),
        "SECRET_KEY": django_settings.SECRET_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    log_path = tmp_path / "runserver.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--insecure"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()  # by its PID
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def qemu_screen(running_vm):  # noqa: F811
    """A diskless QEMU (SeaBIOS's screen) serving its display on the VM's vnc.sock, as the worker plan starts it."""
    if not shutil.which(QEMU):
        pytest.skip(f"{QEMU} not installed")
    vm_dir = running_vm.sock.parent
    pidfile = vm_dir / "qemu.pid"
    subprocess.run(
        [*BIOS_ONLY, "-vnc", f"unix:{vm_dir / 'vnc.sock'},share=force-shared", "-pidfile", str(pidfile), "-daemonize"],
        check=True,
        timeout=60,
    )
    yield running_vm
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)  # by its PID file
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)


def test_the_screen_page_shows_the_guest_display(chromium, qemu_screen, portal_server, user):
    client = Client()
    client.force_login(user)
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, base_url=portal_server)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": portal_server}])
    errors: list[str] = []
    try:
        pg = context.new_page()
        pg.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        pg.on("console", lambda msg: msg.type == "error" and errors.append(f"console: {msg.text}"))
        pg.goto(f"/slices/{qemu_screen.slice_id}/vms/{qemu_screen.pk}/vnc/")
        expect(pg.get_by_test_id("console-state")).to_have_attribute("data-state", "live")
        pg.wait_for_function(f"() => ({CANVAS_COLOURS})() > 1", timeout=60_000)
        shot(pg, "vnc-bios-screen")
        # Closing the tab ends the SSH session and its socat on the worker.
        pg.close()
        deadline = time.monotonic() + 15
        while socats(qemu_screen.sock.with_name("vnc.sock")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert socats(qemu_screen.sock.with_name("vnc.sock")) == 0
    finally:
        context.close()
    assert errors == []


def socats(sock) -> int:
    out = subprocess.run(["pgrep", "-f", f"UNIX-CONNECT:{sock}"], capture_output=True, text=True).stdout
    return len(out.split())
