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
import subprocess
import time

import pytest
from django.test import Client
from playwright.sync_api import expect

from tests.browser.conftest import CANVAS_COLOURS, TIMEOUT_MS, asgi_runserver, shot
from tests.provisioning.conftest import host_dirs, ssh_hosts, sshd  # noqa: F401 (fixtures)
from tests.provisioning.consoles_support import console_layer, running_vm  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.timeout(180)]

QEMU = "qemu-system-x86_64"
BIOS_ONLY = (QEMU, "-nodefaults", "-no-user-config", "-accel", "tcg", "-m", "32", "-vga", "std", "-display", "none")


@pytest.fixture
def portal_server(sshd, console_layer, settings, tmp_path):  # noqa: F811
    """The portal's ASGI server on the test database, trusting the test sshd; its base URL."""
    with asgi_runserver(
        tmp_path / "runserver.log",
        REDIS_URL=settings.REDIS_URL,
        CHANNELS_PREFIX=settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        PROVISIONING_KNOWN_HOSTS=str(sshd.known_hosts),
    ) as url:
        yield url


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
