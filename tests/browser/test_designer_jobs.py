"""Issue 16: the designer follows a job from its data: colours from what a failed step touched,
polls the deployment only, never shows an older answer over a newer one, and cancels a job."""

import json
import re

import pytest
from playwright.sync_api import expect

from slices import services

from .conftest import shot
from .test_designer import add_vm, open_designer

pytestmark = pytest.mark.browser


def fake_deployment(slice_obj, steps: list[dict], status: str = "failed") -> dict:
    """A finished deployment as ``GET /api/deployments/{id}/`` answers it (steps name the VM and VLAN they touch)."""
    return {
        "id": 9001,
        "slice": slice_obj.pk,
        "slice_name": slice_obj.name,
        "kind": "deploy",
        "status": status,
        "dry_run": False,
        "progress": 50,
        "error": "worker1: a step failed",
        "requested_by": "ada",
        "job_id": "x",
        "created": "2026-01-01T00:00:00Z",
        "started": "2026-01-01T00:00:01Z",
        "finished": "2026-01-01T00:00:09Z",
        "heartbeat": None,
        "cancel_requested": False,
        "stats": {},
        "plan": None,
        "steps_revision": len(steps),
        "steps": [
            {
                "seq": i + 1,
                "phase": "links",
                "command": "true",
                "exit_code": 1 if step["status"] == "failed" else 0,
                "output_tail": "",
                "started": "2026-01-01T00:00:02Z",
                "finished": "2026-01-01T00:00:03Z",
                "duration_ms": 1000,
                "revision": i + 1,
                **step,
            }
            for i, step in enumerate(steps)
        ],
    }


def serve_deployment(pg, deployment: dict) -> None:
    """Answer the page's deployment requests with ``deployment`` (the list and the detail)."""
    listing = {"count": 1, "next": None, "previous": None, "results": [deployment]}
    pg.route(re.compile(r"/api/deployments/\?"), lambda route: route.fulfill(json=listing))
    pg.route(re.compile(rf"/api/deployments/{deployment['id']}/"), lambda route: route.fulfill(json=deployment))


def states(pg) -> dict[str, str]:
    return pg.evaluate(
        """() => Object.fromEntries(window.designer.cy.elements('.vm, .link').map((e) =>
            [e.isNode() ? e.data('label').split('\\n')[0] : `VLAN ${e.data('vlan')}`, e.data('state')]))"""
    )


def test_failed_vm_and_link_are_coloured_from_the_step_data(page, ui_user, inventory):
    """A failed step on VLAN 1000 and vm12 colours neither VLAN 100 nor vm1 (no substring matching)."""
    pg = page
    s = services.slice_create(owner=ui_user, name="colours")
    vms = [
        services.vm_create(
            slice_obj=s, name=f"vm{i}", data_interfaces_count=2, x=150 + 300 * (i % 3), y=150 + 200 * (i // 3)
        )
        for i in (1, 2, 3)
    ]
    link = services.link_connect(slice_obj=s, vm_a=vms[0], vm_b=vms[1])
    services.link_connect(slice_obj=s, vm_a=vms[1], vm_b=vms[2])
    vlan = link.vlan
    steps = [
        # Texts that mention VLAN {vlan} and vm1 as substrings, but touch something else.
        {
            "host": "netnode",
            "description": f"Start dnsmasq for VLAN {vlan}0 in ns-dhcp-vlan{vlan}0",
            "status": "failed",
            "vm": None,
            "vlan": vlan * 10,
        },
        {
            "host": "worker1",
            "description": f"Create TAP tap_{vms[0].pk}1_eth1 for vm1 on VLAN {vlan}",
            "status": "ok",
            "vm": vms[0].pk,
            "vlan": vlan,
        },
        # The step that really failed on a VM: vm3 (named only by id in the data).
        {"host": "worker2", "description": "Start QEMU", "status": "failed", "vm": vms[2].pk, "vlan": None},
    ]
    serve_deployment(pg, fake_deployment(s, steps))
    open_designer(pg, ui_user, s)
    expect(pg.get_by_test_id("deploy-error")).to_be_attached()  # the job is shown (in the Deployment tab)
    got = states(pg)
    assert got["vm3"] == "failed", got
    assert got["vm1"] != "failed" and got["vm2"] != "failed", got
    assert got[f"VLAN {vlan}"] != "failed", got
    shot(pg, "70-failed-from-data")


def test_an_older_slice_answer_never_overwrites_a_newer_one(page, ui_user, inventory):
    pg = page
    s = services.slice_create(owner=ui_user, name="race1")
    open_designer(pg, ui_user, s)
    held = []

    def hold_first(route):
        if held or route.request.method != "GET":
            route.fallback()
            return
        held.append((route, route.fetch()))  # answered now (one VM), delivered late

    pg.route(re.compile(rf"/api/slices/{s.pk}/$"), hold_first)
    add_vm(pg, "vm1")
    add_vm(pg, "vm2")
    expect(pg.get_by_test_id("outline-vms").locator("li")).to_have_count(2)
    assert held, "the first reload of the slice was not seen"
    route, response = held[0]
    assert [vm["name"] for vm in json.loads(response.body())["vms"]] == ["vm1"]
    route.fulfill(response=response)
    pg.wait_for_timeout(500)
    expect(pg.get_by_test_id("outline-vms").locator("li")).to_have_count(2)
    assert pg.evaluate("() => window.designer.cy.nodes('.vm').length") == 2


def test_a_job_is_followed_by_polling_the_deployment_only(page, ui_user, inventory, provisioning_worker):
    """While the job runs only the deployment is read; the slice is read once, when it ends."""
    pg = page
    s = services.slice_from_template(owner=ui_user, name="line3", topology="linear", count=3)
    open_designer(pg, ui_user, s)
    reads = []
    pg.on(
        "request",
        lambda r: reads.append(r.url.split("/api/")[1]) if r.method == "GET" and "/api/" in r.url else None,
    )
    pg.get_by_test_id("deploy").click()
    expect(pg.get_by_test_id("job-done")).to_be_visible(timeout=60_000)
    expect(pg.get_by_test_id("slice-status")).to_have_text("Active")
    pg.wait_for_timeout(1500)  # no more reads after the end
    slice_reads = [u for u in reads if u.startswith(f"slices/{s.pk}/")]
    polls = [u for u in reads if u.startswith("deployments/")]
    assert slice_reads == [f"slices/{s.pk}/"], reads
    assert len(polls) >= 2 and reads[-1] == f"slices/{s.pk}/", reads


@pytest.mark.parametrize("provisioning_worker", [{"delay": 0.25}], indirect=True)
def test_cancel_a_running_job(page, ui_user, inventory, provisioning_worker):
    pg = page
    s = services.slice_from_template(owner=ui_user, name="cancel1", topology="ring", count=3)
    open_designer(pg, ui_user, s)
    cancel = pg.get_by_test_id("cancel-job")
    expect(cancel).to_be_hidden()
    pg.get_by_test_id("deploy").click()
    expect(cancel).to_be_visible()
    # Let a few steps run, then cancel (with a confirmation).
    pg.wait_for_function(
        "() => Number(document.querySelector('[data-testid=\"progress\"]')?.getAttribute('aria-valuenow')) > 0",
        timeout=30_000,
    )
    cancel.click()
    expect(pg.locator("#confirm-dialog")).to_be_visible()
    shot(pg, "71-cancel-confirm")
    pg.get_by_test_id("confirm-ok").click()
    expect(cancel).to_have_text(re.compile("Cancelling"))
    expect(cancel).to_be_disabled()
    shot(pg, "72-cancelling")
    view = pg.get_by_test_id("deploy-view")
    expect(view.get_by_test_id("deploy-cancelled")).to_contain_text("Cancelled at step", timeout=60_000)
    expect(cancel).to_be_hidden()
    expect(pg.get_by_test_id("slice-status")).to_have_text("Failed")
    expect(pg.get_by_test_id("redeploy")).to_be_enabled()
    # The server's message names the last step that ended; the steps after it did not run.
    expect(view.get_by_test_id("deploy-cancelled")).to_contain_text("Cancelled after step")
    expect(view.locator('.step[data-status="not_run"]').first).to_be_attached()
    pg.wait_for_timeout(300)  # colour transitions
    shot(pg, "73-cancelled")
    s.refresh_from_db()
    assert s.status == "failed"
    assert s.deployments.get().status == "cancelled"
