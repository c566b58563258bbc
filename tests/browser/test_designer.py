"""The designer in a real browser: log in, draw a ring, inspect, plan, deploy, destroy."""

import re

import pytest
from playwright.sync_api import expect

from slices import services
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


def test_draw_a_ring_plan_deploy_watch_progress_and_destroy(page, ui_user, deploy_env):
    """The whole first-time journey, as the issue describes it: on fake hosts with the
    dry-run runner, and on the local lab (real guests, real leases) when run as root."""
    lab = deploy_env["kind"] == "lab"
    job_timeout = 240_000 if lab else 60_000
    tag = "lab-" if lab else ""
    pg = page
    pg.goto("/")
    expect(pg).to_have_url(re.compile(r"/login/"))
    shot(pg, f"{tag}01-login")
    login(pg, ui_user)
    expect(pg.get_by_role("heading", name="My slices")).to_be_visible()
    expect(pg.get_by_text("No slices yet")).to_be_visible()
    shot(pg, f"{tag}02-my-slices-empty")

    pg.get_by_test_id("open-create").click()
    pg.locator("#create-dialog").get_by_label("Name").fill("ring1")
    pg.keyboard.press("Enter")
    expect(pg).to_have_url(re.compile(r"/slices/\d+/$"))
    wait_ready(pg)
    expect(pg.locator("#canvas-empty")).to_be_visible()
    shot(pg, f"{tag}03-designer-empty")

    for name in ("vm1", "vm2", "vm3"):
        add_vm(pg, name)
    shot(pg, f"{tag}04-three-vms")

    pg.get_by_test_id("link-mode").click()
    expect(pg.get_by_test_id("link-mode")).to_have_attribute("aria-pressed", "true")
    for made, (a, b) in enumerate((("vm1", "vm2"), ("vm2", "vm3"), ("vm3", "vm1")), start=1):
        drag(pg, node_point(pg, a), node_point(pg, b))
        wait_links(pg, made)  # (was the database's count, read before the POST had landed under load)
    assert Link.objects.count() == 3
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
    pg.locator("#canvas-toasts .toast").first.wait_for(state="detached", timeout=10_000)
    shot(pg, f"{tag}05-ring")

    # Before deploy: where each VM lands, and the exact commands per host.
    pg.get_by_test_id("open-placement").click()
    placement = pg.get_by_test_id("placement-view")
    for name in ("vm1", "vm2", "vm3"):
        expect(placement.locator(f'[data-vm="{name}"]')).to_be_visible()
    expect(placement.locator('[data-host="worker1"]')).to_be_visible()
    shot(pg, f"{tag}06-placement")
    pg.keyboard.press("Escape")
    expect(pg.locator("#placement-dialog")).to_be_hidden()

    pg.get_by_test_id("open-plan").click()
    plan = pg.get_by_test_id("plan-view")
    expect(plan.get_by_test_id("plan-host-netnode")).to_be_visible()
    expect(plan.locator(".plan-host")).to_have_count(3)  # two workers and the network node
    vm_ids = sorted(slice_obj.vms.values_list("id", flat=True))
    expect(plan).to_contain_text(f"tap_{vm_ids[0]}_eth1")
    expect(plan).to_contain_text(f"tag={vlans[0]}")
    expect(plan).to_contain_text("dnsmasq")
    shot(pg, f"{tag}07-host-plan")
    pg.keyboard.press("Escape")
    expect(pg.locator("#plan-dialog")).to_be_hidden()

    # Deploy, and watch the job live: a lane per host, the bar moving, then 100 %.
    polls = []
    pg.on("request", lambda r: polls.append(r.url) if re.search(r"/api/deployments/\d+/", r.url) else None)
    pg.get_by_test_id("deploy").click()
    deploy_view = pg.get_by_test_id("deploy-view")
    expect(deploy_view).to_be_visible()
    progress = pg.get_by_test_id("progress")
    pg.wait_for_function(
        """() => {
            if (document.querySelector('[data-testid="deploy-error"]')) return true;
            const bar = document.querySelector('[data-testid="progress"]');
            const value = bar && Number(bar.getAttribute('aria-valuenow'));
            return value > 0 && value < 100;
        }""",
        timeout=job_timeout,
    )
    error = pg.get_by_test_id("deploy-error")
    assert not error.count(), f"the deploy failed: {error.inner_text()}"
    expect(deploy_view.locator(".lane")).to_have_count(3)
    shot(pg, f"{tag}08-deploying")
    expect(progress).to_have_attribute("aria-valuenow", "100", timeout=job_timeout)
    expect(pg.get_by_test_id("progress-pct")).to_have_text("100 %")
    expect(pg.get_by_test_id("slice-status")).to_have_text("Active")
    # Every poll asked only for what changed (no plan, steps after the last revision seen), and the
    # revisions it sent only grew.
    assert polls and all("plan=false" in url and "steps_after=" in url for url in polls), polls
    seen = [int(re.search(r"steps_after=(\d+)", url).group(1)) for url in polls]
    assert seen == sorted(seen) and seen[-1] > 0, seen
    for lane in deploy_view.locator(".lane").all():
        expect(lane.locator(".step")).not_to_have_count(0)
        expect(lane.locator('.step[data-status="failed"]')).to_have_count(0)

    # At the end: each VM's worker and addresses, on the canvas and in the results.
    slice_obj.refresh_from_db()
    assert slice_obj.status == "active"
    for vm in slice_obj.vms.prefetch_related("interfaces"):
        card = pg.get_by_test_id(f"result-{vm.name}")
        expect(card).to_contain_text(f"on {vm.host.name}")
        for iface in vm.interfaces.all():
            if iface.ip_address:
                expect(card.locator(f'tr[data-iface="{iface.name}"] .addr')).to_have_text(iface.ip_address)
    states = pg.evaluate("() => window.designer.cy.nodes('.vm').map((n) => [n.data('label'), n.data('state')])")
    assert all(state == "running" and "\n⌂ worker" in label for label, state in states), states
    edge_states = pg.evaluate("() => window.designer.cy.edges('.link').map((e) => e.data('state'))")
    assert edge_states == ["up", "up", "up"]
    if lab:
        # Real guests: every linked interface got its DHCP lease, and the console shows the guest's report.
        for vm in slice_obj.vms.prefetch_related("interfaces"):
            card = pg.get_by_test_id(f"result-{vm.name}")
            for iface in vm.interfaces.all():
                if iface.vlan and iface.index > 0:
                    assert iface.lease_address, f"{vm.name}.{iface.name} got no lease"
                    expect(card.locator(f'tr[data-iface="{iface.name}"] .lease')).to_have_text(iface.lease_address)
            assert "SP:" in vm.console_tail
            expect(pg.get_by_test_id(f"console-{vm.name}")).to_contain_text("SP:")
    shot(pg, f"{tag}09-deployed")
    pg.get_by_test_id("deploy-results").locator("summary").first.click()
    expect(pg.get_by_test_id("console-vm1")).to_be_visible()
    pg.get_by_test_id("deploy-results").scroll_into_view_if_needed()
    shot(pg, f"{tag}10-deployed-results")

    # Destroy: confirm, watch it to the end, back to a draft.
    pg.get_by_test_id("destroy").click()
    expect(pg.locator("#confirm-dialog")).to_be_visible()
    shot(pg, f"{tag}11-destroy-confirm")
    pg.get_by_test_id("confirm-ok").click()
    expect(deploy_view.locator("h2")).to_contain_text("Destroy")
    expect(progress).to_have_attribute("aria-valuenow", "100", timeout=job_timeout)
    expect(pg.get_by_test_id("slice-status")).to_have_text("Draft")
    expect(pg.get_by_test_id("deploy")).to_be_enabled()
    shot(pg, f"{tag}12-destroyed")
    slice_obj.refresh_from_db()
    assert slice_obj.status == "draft"


def open_designer(pg, user, slice_obj) -> None:
    login(pg, user)
    pg.goto(f"/slices/{slice_obj.pk}/")
    wait_ready(pg)


def test_move_link_errors_chooser_and_keyboard_delete(page, ui_user, inventory):
    pg = page
    s = services.slice_create(owner=ui_user, name="edit1")
    vm1 = services.vm_create(slice_obj=s, name="vm1", data_interfaces_count=1, x=100, y=100)
    vm2 = services.vm_create(slice_obj=s, name="vm2", data_interfaces_count=2, x=420, y=100)
    vm3 = services.vm_create(slice_obj=s, name="vm3", data_interfaces_count=2, x=260, y=340)
    services.link_connect(slice_obj=s, vm_a=vm1, vm_b=vm2)
    open_designer(pg, ui_user, s)
    wait_links(pg, 1)

    # Moving a node saves its position through the API.
    start = node_point(pg, "vm3")
    drag(pg, start, {"x": start["x"] + 90, "y": start["y"] - 40})
    pg.wait_for_function("([id, x]) => window.designer.state.vms.get(id).x > x", arg=[vm3.pk, vm3.x + 40], timeout=5000)
    vm3.refresh_from_db()
    assert vm3.x > 300 and vm3.y < 340

    # vm1 has one data interface, already linked: the API refuses, the error shows on the canvas.
    pg.console.allow(r"status of 400")  # the browser logs the refused request itself
    pg.keyboard.press("l")
    expect(pg.get_by_test_id("link-mode")).to_have_attribute("aria-pressed", "true")
    drag(pg, node_point(pg, "vm1"), node_point(pg, "vm3"))
    error = pg.get_by_test_id("canvas-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("no free data interface")
    shot(pg, "20-link-error")

    # The interface chooser (Shift on drop, or the toolbar option): pick vm3.eth2 instead of eth1.
    pg.locator("#opt-choose-ifaces").check()
    drag(pg, node_point(pg, "vm2"), node_point(pg, "vm3"))
    chooser = pg.locator("#link-dialog")
    expect(chooser).to_be_visible()
    expect(chooser.locator("#link-iface-a")).to_have_value("eth2")
    chooser.locator("#link-iface-b").select_option("eth2")
    shot(pg, "21-interface-chooser")
    chooser.get_by_test_id("link-submit").click()
    expect(chooser).to_be_hidden()
    wait_links(pg, 2)
    ends = {(i.vm.name, i.name) for lk in s.links.all() for i in (lk.a, lk.b)}
    assert ("vm3", "eth2") in ends and ("vm2", "eth2") in ends
    pg.keyboard.press("Escape")  # leave link mode

    # Select the first link from the outline and delete it with the Delete key.
    pg.get_by_test_id("outline-links").locator("button").first.click()
    expect(pg.get_by_test_id("link-inspector")).to_be_visible()
    pg.locator("#cy").focus()
    pg.keyboard.press("Delete")
    wait_links(pg, 1)
    # A VM, by clicking its node, then the toolbar button.
    point = node_point(pg, "vm1")
    pg.mouse.click(point["x"], point["y"])
    expect(pg.get_by_test_id("vm-inspector")).to_contain_text("vm1")
    pg.get_by_test_id("delete-selected").click()
    expect(pg.get_by_test_id("outline-vms").locator("li")).to_have_count(2)
    assert sorted(s.vms.values_list("name", flat=True)) == ["vm2", "vm3"]

    # Double-click a VM to edit it; the API's refusal shows under the field that caused it.
    point = node_point(pg, "vm2")
    pg.mouse.dblclick(point["x"], point["y"])
    dialog = pg.locator("#vm-dialog")
    expect(dialog.get_by_role("heading")).to_have_text("Edit vm2")
    dialog.get_by_label("Data interfaces").fill("1")
    pg.keyboard.press("Enter")
    expect(dialog.locator('[data-error-for="data_interfaces_count"]')).to_contain_text("carries a link")
    shot(pg, "22-edit-field-error")
    dialog.get_by_label("Data interfaces").fill("4")
    pg.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    vm2.refresh_from_db()
    assert vm2.data_interfaces_count == 4


def test_png_export_and_narrow_window(page, ui_user, inventory):
    pg = page
    s = services.slice_from_template(owner=ui_user, name="mesh4", topology="mesh", count=4)
    open_designer(pg, ui_user, s)
    wait_links(pg, 6)
    pg.get_by_test_id("export-menu").click()
    with pg.expect_download() as download_info:
        pg.get_by_test_id("export-png").click()
    download = download_info.value
    assert download.suggested_filename == "mesh4.png"
    assert open(download.path(), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    shot(pg, "30-mesh-1280x800")

    pg.set_viewport_size({"width": 420, "height": 860})
    pg.wait_for_timeout(300)
    assert pg.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    expect(pg.get_by_test_id("deploy")).to_be_visible()
    shot(pg, "31-designer-narrow")
    shot(pg, "32-designer-narrow-full", full_page=True)
    pg.goto("/")
    wait_ready(pg)
    assert pg.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(pg, "33-my-slices-narrow")


@pytest.mark.parametrize("provisioning_worker", [{"fail": "Create TAP tap_"}], indirect=True)
def test_a_failing_step_shows_its_stderr_and_redeploy_repairs(page, ui_user, inventory, provisioning_worker):
    pg = page
    s = services.slice_from_template(owner=ui_user, name="line2", topology="linear", count=2)
    open_designer(pg, ui_user, s)
    pg.get_by_test_id("deploy").click()
    error = pg.get_by_test_id("deploy-error")
    expect(error).to_be_visible(timeout=30_000)
    expect(pg.get_by_test_id("slice-status")).to_have_text("Failed")
    failed = pg.locator('.step[data-status="failed"]')
    expect(failed).to_have_count(1)
    expect(failed.get_by_test_id("failed-step-output")).to_contain_text("Device or resource busy")
    expect(failed.get_by_test_id("failed-step-output")).to_contain_text("exit 1")
    host = failed.locator("xpath=ancestor::details[1]").get_attribute("data-host")
    expect(error).to_contain_text(host)
    expect(pg.get_by_test_id("job-failed")).to_be_visible()
    states = pg.evaluate("() => window.designer.cy.nodes('.vm').map((n) => n.data('state'))")
    assert "failed" in states
    pg.get_by_test_id("job-failed").locator("button").click()
    shot(pg, "40-failed-step")

    # The failure happens once: a redeploy goes through and the slice becomes active.
    pg.get_by_test_id("redeploy").click()
    expect(pg.get_by_test_id("deploy-view").locator("h2")).to_contain_text("Redeploy")
    expect(pg.get_by_test_id("progress")).to_have_attribute("aria-valuenow", "100", timeout=60_000)
    expect(pg.get_by_test_id("slice-status")).to_have_text("Active")
    shot(pg, "41-redeployed")
