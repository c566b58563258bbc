"""Issue 16, defect 16: the designer's tooltips, toasts, link end labels and where new VMs land."""

import pytest
from playwright.sync_api import expect

from slices import services

from .conftest import login, shot, wait_ready
from .test_designer import add_vm, open_designer

pytestmark = pytest.mark.browser

# What the enabled Deploy button says about itself (templates/slices/designer.html).
DEPLOY_HINT = "Deploy the slice on the cluster"


def boxes_intersect(a: dict, b: dict) -> bool:
    """Whether two boxes {x, y, width, height} overlap (touching edges do not count)."""
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def vm_positions(pg) -> dict[str, dict]:
    return pg.evaluate(
        """() => Object.fromEntries(window.designer.cy.nodes('.vm').map(
            (n) => [n.data('label').split('\\n')[0], n.position()]))"""
    )


def test_deploy_tooltip_follows_its_state_and_new_vms_fill_a_grid(page, ui_user, inventory):
    pg = page
    s = services.slice_create(owner=ui_user, name="grid1")
    open_designer(pg, ui_user, s)
    deploy = pg.get_by_test_id("deploy")
    expect(deploy).to_be_disabled()
    expect(deploy).to_have_attribute("title", "Add VMs first.")

    for name in ("vm1", "vm2", "vm3", "vm4"):
        add_vm(pg, name)
    expect(deploy).to_be_enabled()
    expect(deploy).to_have_attribute("title", DEPLOY_HINT)
    shot(pg, "60-grid-of-new-vms")

    # The first VM lands at the centre of the view, each next one right of the last, and when
    # the row is full, at the start of the next row: one grid, no two VMs in the same cell.
    pos = vm_positions(pg)
    view = pg.evaluate(
        """() => { const e = window.designer.cy.extent();
                   return {x: (e.x1 + e.x2) / 2, y: (e.y1 + e.y2) / 2, x1: e.x1, x2: e.x2}; }"""
    )
    first = pos["vm1"]
    assert abs(first["x"] - view["x"]) < 2 and abs(first["y"] - view["y"]) < 2, (first, view)
    assert pos["vm2"]["y"] == first["y"] and pos["vm2"]["x"] > first["x"], pos
    col = pos["vm2"]["x"] - first["x"]
    rows = sorted({round(p["y"] - first["y"]) for p in pos.values()})
    assert len(rows) == 2 and rows[0] == 0 and rows[1] > 0, pos  # two rows at 1280x800
    for name, p in pos.items():
        assert (p["x"] - first["x"]) % col == 0, (name, pos)
    assert len({(p["x"], p["y"]) for p in pos.values()}) == 4
    # The second row starts at the first grid column inside the view.
    second_row = sorted(p["x"] for p in pos.values() if p["y"] > first["y"])
    assert second_row[0] - col < view["x1"] + 56, (second_row, view)
    # Saved where they were drawn.
    saved = {vm.name: (vm.x, vm.y) for vm in s.vms.all()}
    assert all(saved[name] == (p["x"], p["y"]) for name, p in pos.items()), (saved, pos)


LABEL_BOXES = """() => {
    const cy = window.designer.cy;
    const opts = {includeNodes: false, includeEdges: false, includeMainLabels: false,
                  includeOverlays: false, includeUnderlays: false};
    const out = [];
    cy.nodes('.vm').forEach((node) => {
        const ends = node.connectedEdges('.link').map((edge) => {
            const source = edge.source().same(node);
            const b = edge.boundingBox({...opts, includeSourceLabels: source, includeTargetLabels: !source});
            return {link: edge.id(), text: edge.data(source ? 'ifaceA' : 'ifaceB'),
                    x: b.x1, y: b.y1, width: b.w, height: b.h};
        });
        out.push({vm: node.data('label').split('\\n')[0], ends});
    });
    return out;
}"""


def test_end_labels_of_links_meeting_at_a_vm_do_not_overlap(page, ui_user, inventory):
    pg = page
    s = services.slice_create(owner=ui_user, name="fan1")
    hub = services.vm_create(slice_obj=s, name="hub", data_interfaces_count=3, x=200, y=300)
    # Three links leaving the hub at almost the same angle: their "eth" labels fall on one spot.
    for name, y in (("vm2", 380), ("vm3", 220), ("vm4", 300)):
        vm = services.vm_create(slice_obj=s, name=name, data_interfaces_count=1, x=640, y=y)
        services.link_connect(slice_obj=s, vm_a=hub, vm_b=vm)
    star = services.slice_from_template(owner=ui_user, name="star6", topology="star", count=6)
    login(pg, ui_user)
    for slice_obj in (s, star):
        pg.goto(f"/slices/{slice_obj.pk}/")
        wait_ready(pg)
        expect(pg.get_by_test_id("outline-links").locator("li")).to_have_count(slice_obj.links.count())
        pg.wait_for_timeout(300)  # style transitions
        shot(pg, f"61-end-labels-{slice_obj.name}")
        for node in pg.evaluate(LABEL_BOXES):
            ends = node["ends"]
            assert all(e["width"] > 0 for e in ends), node
            for i, a in enumerate(ends):
                for b in ends[i + 1 :]:
                    assert not boxes_intersect(a, b), (slice_obj.name, node["vm"], a, b)


def test_the_job_toast_leaves_the_results_visible(page, ui_user, inventory, provisioning_worker):
    pg = page
    s = services.slice_from_template(owner=ui_user, name="ring3", topology="ring", count=3)
    open_designer(pg, ui_user, s)
    pg.get_by_test_id("deploy").click()
    done = pg.get_by_test_id("job-done")
    expect(done).to_be_visible(timeout=60_000)
    results = pg.get_by_test_id("deploy-results")
    expect(results.locator(".iface-table")).to_have_count(3)
    shot(pg, "62-job-toast")
    toast_box = done.bounding_box()
    for table in results.locator(".iface-table").all():
        assert not boxes_intersect(toast_box, table.bounding_box()), (toast_box, table.bounding_box())
    assert not boxes_intersect(toast_box, pg.locator(".sidepanel").bounding_box())
