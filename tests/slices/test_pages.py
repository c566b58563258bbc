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
