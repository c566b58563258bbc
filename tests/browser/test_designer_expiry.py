"""The slice's expiry in the designer: a warning before it, and Extend (within the user's maximum)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from slices import services
from slices.models import Slice

from .conftest import login, shot, wait_ready

pytestmark = pytest.mark.browser


def test_the_designer_warns_before_expiry_and_extends(page, ui_user, inventory, settings):
    settings.SLICE_EXPIRY_WARNING_HOURS, settings.SLICE_LIFETIME_MAX_HOURS = 24, 72
    s = services.slice_create(owner=ui_user, name="shortlived")
    services.vm_create(slice_obj=s, name="vm1")
    # As a deploy leaves it (the deploy itself: tests/provisioning/test_lifetime.py), two hours to go.
    Slice.objects.filter(pk=s.pk).update(status="active", expires_at=timezone.now() + timedelta(hours=2))
    login(page, ui_user)
    page.goto(f"/slices/{s.pk}/")
    wait_ready(page)
    bar = page.get_by_test_id("slice-expiry")
    expect(bar).to_contain_text("This slice expires soon")
    expect(bar).to_contain_text("then it is destroyed and its design kept")
    shot(page, "designer-expiry-warning")

    hours = bar.get_by_label("Hours from now")
    hours.fill("100")  # over the user's maximum: the form refuses it (the API too: test_lifetime.py)
    page.get_by_test_id("extend").click()
    assert hours.evaluate("e => e.validity.rangeOverflow") and hours.get_attribute("max") == "72"

    hours.fill("48")
    page.get_by_test_id("extend").click()
    expect(page.get_by_test_id("slice-expiry")).not_to_contain_text("expires soon")
    s.refresh_from_db()
    assert timedelta(hours=47) < s.expires_at - timezone.now() <= timedelta(hours=48)
