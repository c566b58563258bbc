"""The designer in a real browser: log in, draw a ring, inspect, plan, deploy, destroy."""

import re

import pytest
from playwright.sync_api import expect

from slices.models import Link, Slice

from .conftest import login, shot, wait_ready

pytestmark = pytest.mark.browser


def node_point(pg, vm_name: str) -> dict:
    """Where the node of ``vm_name`` is on the page (CSS pixels)."""
    return pg.evaluate(
        """(name) => {
            const cy = window.designer.cy;
            const node = cy.nodes('.vm').filter((n) => n.data('label').split('\\n')[0] === name)[0];
            const p = node.renderedPosition();
            const box = cy.container().getBoundingClientRect();
            return {x: box.left + p.x, y: box.top + p.y};
        }""",
        vm_name,
    )


def drag(pg, start: dict, end: dict) -> None:
    pg.mouse.move(start["x"], start["y"])
    pg.mouse.down()
    pg.mouse.move((start["x"] + end["x"]) / 2, (start["y"] + end["y"]) / 2, steps=6)
    pg.mouse.move(end["x"], end["y"], steps=6)
    pg.mouse.up()


def add_vm(pg, name: str, interfaces: int = 2, internet: bool = False) -> None:
    pg.get_by_test_id("add-vm").click()
    dialog = pg.locator("#vm-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Data interfaces").fill(str(interfaces))
    if internet:
        dialog.locator(".switch").click()
    pg.keyboard.press("Enter")  # Enter submits the form
    expect(dialog).to_be_hidden()
    expect(pg.get_by_test_id("outline-vms").get_by_text(name, exact=True)).to_be_visible()


def wait_links(pg, count: int) -> None:
    expect(pg.get_by_test_id("outline-links").locator("li")).to_have_count(count)


def test_login_create_and_draw_a_ring(page, live_server, ui_user, inventory):
    pg = page
    pg.goto("/")
    expect(pg).to_have_url(re.compile(r"/login/"))
    shot(pg, "01-login")
    login(pg, ui_user)
    expect(pg.get_by_role("heading", name="My slices")).to_be_visible()
    expect(pg.get_by_text("No slices yet")).to_be_visible()
    shot(pg, "02-my-slices-empty")

    pg.get_by_test_id("open-create").click()
    pg.locator("#create-dialog").get_by_label("Name").fill("ring1")
    pg.keyboard.press("Enter")
    expect(pg).to_have_url(re.compile(r"/slices/\d+/$"))
    wait_ready(pg)
    expect(pg.locator("#canvas-empty")).to_be_visible()
    shot(pg, "03-designer-empty")

    for name in ("vm1", "vm2", "vm3"):
        add_vm(pg, name)
    shot(pg, "04-three-vms")

    pg.get_by_test_id("link-mode").click()
    expect(pg.get_by_test_id("link-mode")).to_have_attribute("aria-pressed", "true")
    for a, b in (("vm1", "vm2"), ("vm2", "vm3"), ("vm3", "vm1")):
        drag(pg, node_point(pg, a), node_point(pg, b))
        wait_links(pg, Link.objects.count())
    wait_links(pg, 3)
    pg.keyboard.press("Escape")  # leaves link mode

    slice_obj = Slice.objects.get(name="ring1")
    vlans = sorted(slice_obj.links.values_list("vlan", flat=True))
    assert len(vlans) == 3 and len(set(vlans)) == 3
    # The VLANs and subnets are on the edges' labels and in the outline.
    labels = pg.evaluate("() => window.designer.cy.edges('.link').map((e) => e.data('label'))")
    assert sorted(int(re.match(r"VLAN (\d+)\n", label).group(1)) for label in labels) == vlans
    assert all(re.search(r"\n10\.\d+\.\d+\.0/24$", label) for label in labels)
    for vlan in vlans:
        expect(pg.get_by_test_id("outline-links").get_by_text(f"VLAN {vlan}", exact=True)).to_be_visible()
    shot(pg, "05-ring")
