"""My slices in a real browser: templates, import, export, delete, log out."""

import json
import re

import pytest
import yaml
from playwright.sync_api import expect

from slices import services
from slices.models import Slice

from .conftest import login, shot, wait_ready

pytestmark = pytest.mark.browser


def test_create_from_template_export_and_delete(page, ui_user, inventory):
    pg = page
    login(pg, ui_user)
    pg.get_by_test_id("open-create").click()
    dialog = pg.locator("#create-dialog")
    dialog.get_by_label("Name").fill("star1")
    dialog.get_by_label("Topology").select_option("star")
    dialog.get_by_label("VMs").fill("5")
    expect(dialog.locator("#topology-preview svg circle")).to_have_count(5)
    shot(pg, "50-create-from-template")
    dialog.get_by_test_id("create-submit").click()
    expect(pg).to_have_url(re.compile(r"/slices/\d+/$"))
    wait_ready(pg)
    expect(pg.get_by_test_id("outline-vms").locator("li")).to_have_count(5)
    expect(pg.get_by_test_id("outline-links").locator("li")).to_have_count(4)
    shot(pg, "51-star-from-template")

    pg.get_by_role("link", name="My slices").click()
    wait_ready(pg)
    row = pg.get_by_test_id("slice-row-star1")
    expect(row).to_contain_text("Draft")
    expect(row.locator("td").nth(2)).to_have_text("5")
    expect(row.locator("td").nth(3)).to_have_text("4")
    shot(pg, "52-my-slices")

    with pg.expect_download() as download_info:
        row.get_by_role("button", name="Export star1 as YAML").click()
    download = download_info.value
    assert download.suggested_filename == "star1.yaml"
    document = yaml.safe_load(open(download.path()).read())
    assert [vm["name"] for vm in document["vms"]] == ["vm1", "vm2", "vm3", "vm4", "vm5"]
    assert len(document["links"]) == 4

    with pg.expect_download() as download_info:
        row.get_by_role("button", name="Export star1 as JSON").click()
    assert json.loads(open(download_info.value.path()).read())["name"] == "star1"

    row.get_by_role("button", name="Delete star1").click()
    expect(pg.locator("#confirm-dialog")).to_be_visible()
    pg.get_by_test_id("confirm-ok").click()
    expect(pg.get_by_text("No slices yet")).to_be_visible()
    assert not Slice.objects.filter(name="star1").exists()


def test_import_a_file_and_see_errors_by_field(page, ui_user, inventory, tmp_path):
    pg = page
    login(pg, ui_user)
    good = tmp_path / "pair.yaml"
    good.write_text(
        "name: pair\nvms:\n  - {name: a, data_interfaces_count: 1, x: 100, y: 100}\n"
        "  - {name: b, data_interfaces_count: 1, x: 340, y: 100}\nlinks:\n  - [a:eth1, b:eth1]\n"
    )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "vms": [{"name": "x y"}], "links": []}))

    pg.get_by_test_id("open-import").click()
    dialog = pg.locator("#import-dialog")
    dialog.get_by_test_id("import-submit").click()  # no file chosen: said under the field, no request
    expect(dialog.locator('[data-error-for="file"]')).to_have_text("Choose a YAML or JSON file.")
    dialog.get_by_label("File").set_input_files(str(bad))
    pg.console.allow(r"status of 400")  # the browser logs the refused request itself
    dialog.get_by_test_id("import-submit").click()
    error = dialog.locator('[data-error-for="file"]')
    expect(error).to_be_visible()
    expect(error).to_contain_text("vms[0].name")
    shot(pg, "53-import-error")

    dialog.get_by_label("File").set_input_files(str(good))
    dialog.get_by_label("Name").fill("pair2")
    dialog.get_by_test_id("import-submit").click()
    expect(pg).to_have_url(re.compile(r"/slices/\d+/$"))
    # The designer spreads this cramped drawing and saves it on opening: let it finish, or a
    # request still running when the test ends deadlocks with the flush of the tables.
    wait_ready(pg)
    expect(pg.get_by_test_id("outline-links").locator("li")).to_have_count(1)
    assert Slice.objects.get(name="pair2").vms.count() == 2


def test_field_errors_show_under_the_field_and_logout(page, ui_user, inventory):
    pg = page
    services.slice_create(owner=ui_user, name="taken")
    login(pg, ui_user, password="wrong-password", expect_success=False)
    expect(pg.get_by_role("alert")).to_contain_text("correct username and password")
    login(pg, ui_user)
    pg.get_by_test_id("open-create").click()
    dialog = pg.locator("#create-dialog")
    dialog.get_by_label("Name").fill("taken")
    pg.console.allow(r"status of 400")
    pg.keyboard.press("Enter")
    expect(dialog.locator('[data-error-for="name"]')).to_contain_text("already have a slice named")
    expect(dialog.get_by_label("Name")).to_be_focused()
    pg.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    pg.get_by_test_id("logout").click()
    expect(pg).to_have_url(re.compile(r"/login/$"))
    pg.goto("/")
    expect(pg).to_have_url(re.compile(r"/login/\?next=/$"))


def test_a_containerlab_import_shows_what_it_renamed_and_could_not_represent(page, ui_user, inventory, tmp_path):
    """Issue 13: the designer's Import takes a .clab.yml and reports renamed interfaces and per-node notes."""
    pg = page
    login(pg, ui_user)
    clab = tmp_path / "pair.clab.yml"
    clab.write_text(
        "name: pair\ntopology:\n  nodes:\n    a: {kind: nokia_srlinux, startup-config: a.cfg}\n    b: {kind: linux}\n"
        "  links:\n    - endpoints: ['a:e1-1', 'b:eth1']\n"
    )
    pg.get_by_test_id("open-import").click()
    dialog = pg.locator("#import-dialog")
    dialog.get_by_label("File").set_input_files(str(clab))
    dialog.get_by_test_id("import-submit").click()
    expect(pg).to_have_url(re.compile(r"/slices/\d+/$"))
    wait_ready(pg)
    report = pg.get_by_test_id("import-report")
    expect(report).to_contain_text("a: e1-1 is eth1")
    expect(report).to_contain_text("startup-config")
    shot(pg, "54-clab-import-report")
