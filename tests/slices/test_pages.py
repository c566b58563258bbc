"""The designer pages' shell: what the server hands to the page's script."""

import json
import re

import pytest

from slices.models import BUSY_STATUSES


def page_config(html: str) -> dict:
    match = re.search(r'<script id="page-config" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the page has no page-config"
    return json.loads(match.group(1))


@pytest.mark.django_db
def test_pages_take_the_busy_statuses_from_the_model_and_have_no_feature_flags(client, user, make_slice):
    client.force_login(user)
    slice_obj = make_slice(owner=user, name="pages1")
    for url in ("/", f"/slices/{slice_obj.pk}/"):
        config = page_config(client.get(url).content.decode())
        assert config["busyStatuses"] == [str(status) for status in BUSY_STATUSES]
        assert "features" not in config


@pytest.mark.django_db
def test_the_console_page_is_the_owners_and_names_the_websocket(client, user, other_user, staff_user, make_slice, api):
    slice_obj = make_slice(owner=user, name="pages-console", vms=1)
    vm = slice_obj.vms.get()
    url = f"/slices/{slice_obj.pk}/vms/{vm.pk}/console/"
    for who in (user, staff_user):
        client.force_login(who)
        response = client.get(url)
        assert response.status_code == 200
        config = page_config(response.content.decode())
        assert config["consolePath"] == f"/ws/vms/{vm.pk}/console/"
        assert "vendor/xterm/xterm.js" in response.content.decode()
    client.force_login(other_user)
    assert client.get(url).status_code == 404  # another user's VM, as in the API
    assert client.get(f"/slices/{slice_obj.pk + 1}/vms/{vm.pk}/console/").status_code == 404  # not in that slice
    # The API names the console of each VM.
    assert api.get(f"/api/vms/{vm.pk}/").json()["console_url"] == f"/ws/vms/{vm.pk}/console/"


@pytest.mark.django_db
def test_the_screen_page_is_the_owners_and_names_the_vnc_websocket(
    client, user, other_user, staff_user, make_slice, api
):
    slice_obj = make_slice(owner=user, name="pages-vnc", vms=1)
    vm = slice_obj.vms.get()
    url = f"/slices/{slice_obj.pk}/vms/{vm.pk}/vnc/"
    for who in (user, staff_user):
        client.force_login(who)
        response = client.get(url)
        assert response.status_code == 200
        assert page_config(response.content.decode())["consolePath"] == f"/ws/vms/{vm.pk}/vnc/"
        assert "js/vnc.js" in response.content.decode()
    client.force_login(other_user)
    assert client.get(url).status_code == 404  # another user's VM, as in the API
    assert api.get(f"/api/vms/{vm.pk}/").json()["vnc_url"] == f"/ws/vms/{vm.pk}/vnc/"
    # noVNC is served from the portal (vendored, no CDN), as ES modules that import each other.
    assert (settings_static_root() / "vendor/novnc/core/rfb.js").is_file()


def settings_static_root():
    from django.conf import settings

    return settings.STATICFILES_DIRS[0]
