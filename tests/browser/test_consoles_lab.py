"""Chromium on the lab: a running guest's serial console (xterm.js) and screen (noVNC) through the portal.

The slice is deployed by the lab's end-to-end fixtures (the portal's API, its RQ worker,
real QEMU guests: tests/lab/test_e2e.py); the pages come from the portal's own ASGI
server (``manage.py runserver``, daphne: pytest-django's live server speaks no WebSocket)
on the test database. Root only, like every lab test.
"""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings as django_settings
from django.test import Client
from playwright.sync_api import expect

from provisioning.lab import console
from tests.browser.conftest import (  # noqa: F401
    CANVAS_COLOURS,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    asgi_runserver,
    lab_unavailable_reason,
    shot,
)
from tests.lab.conftest import e2e_worker, lab_session  # noqa: F401 (fixtures)
from tests.lab.test_e2e import new_slice, portal  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

# The terminal's lines as text (xterm.js's buffer: what the user sees, scrollback included).
TERMINAL_LINES = """() => {
  const buffer = window.sliceConsole.term.buffer.active;
  const lines = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
  return lines;
}"""


@pytest.fixture(autouse=True)
def _lab_only():
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def asgi_server(portal, lab_session, tmp_path):  # noqa: F811
    """The portal's ASGI server on the test database, trusting the lab's hosts; its base URL."""
    with asgi_runserver(
        tmp_path / "runserver.log",
        REDIS_URL=django_settings.REDIS_URL,
        CHANNELS_PREFIX=f"sp-browser-{uuid.uuid4().hex[:8]}",
        PROVISIONING_KNOWN_HOSTS=str(lab_session.known_hosts),
        LAB_DIR=str(lab_session.paths.root),
    ) as url:
        yield url


def terminal_lines(pg) -> list[str]:
    return pg.evaluate(TERMINAL_LINES)


def wait_for_line(pg, predicate_js: str, what: str) -> None:
    """Until a line of the terminal satisfies ``predicate_js`` (a JS expression of ``l``)."""
    try:
        pg.wait_for_function(f"() => ({TERMINAL_LINES})().some((l) => {predicate_js})", timeout=60_000)
    except Exception as exc:
        raise AssertionError(f"{what} not seen; the terminal shows: {terminal_lines(pg)[-15:]}") from exc


def test_a_guest_s_console_and_screen_in_chromium(chromium, portal, asgi_server, django_user_model):  # noqa: F811
    s = new_slice(portal, "browser-console")
    vm = portal.vm(s["id"], "vm1", host="worker1", data=1)
    portal.run(s["id"], "deploy")
    console.wait_for_line(portal.state_dir(vm), vm["id"], r"SP: READY", timeout=120)

    client = Client()
    client.force_login(django_user_model.objects.get(username="e2e"))  # the portal fixture's user
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, base_url=asgi_server)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": asgi_server}])
    errors: list[str] = []
    try:
        pages = []
        for _ in range(2):  # two tabs on the same VM
            pg = context.new_page()
            pg.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            pg.goto(f"/slices/{s['id']}/vms/{vm['id']}/console/")
            expect(pg.get_by_test_id("console-state")).to_have_attribute("data-state", "live")
            pages.append(pg)
        first, second = pages

        first.get_by_test_id("terminal").click()
        first.keyboard.type("expr 6 \\* 7")
        first.keyboard.press("Enter")
        # The echo is "expr 6 \* 7" after the prompt; a line that is exactly 42 is the guest's answer.
        for pg in pages:
            wait_for_line(pg, "l.trim() === '42'", "the guest's answer 42")

        second.get_by_test_id("terminal").click()
        second.keyboard.type("ping 127.0.0.1")
        second.keyboard.press("Enter")
        for pg in pages:
            wait_for_line(pg, "/^\\d+ bytes from 127\\.0\\.0\\.1/.test(l) && /seq=1 /.test(l)", "two ping replies")
        first.get_by_test_id("terminal").click()
        first.keyboard.press("Control+C")
        for pg in pages:
            wait_for_line(pg, "l.includes('ping statistics')", "ping stopped by Ctrl-C")
        shot(first, "lab-serial-console")

        screen = context.new_page()
        screen.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        screen.goto(f"/slices/{s['id']}/vms/{vm['id']}/vnc/")
        expect(screen.get_by_test_id("console-state")).to_have_attribute("data-state", "live")
        # Not blank: the guest's VGA console shows its boot report (text on black).
        screen.wait_for_function(f"() => ({CANVAS_COLOURS})() > 1", timeout=60_000)
        colours = screen.evaluate(CANVAS_COLOURS)
        shot(screen, "lab-vnc-screen")
        assert colours > 1
    finally:
        context.close()
    assert errors == []
    # The tabs are closed: the relay let go of the serial socket, the lab's own console works again.
    # (It waits for the socket's lock, at most its timeout.)
    assert portal.sh(vm, "echo back-$((20+1))").output.strip() == "back-21"
    portal.run(s["id"], "destroy")
