"""The VM card's Usage section: CPU and memory as the drift checks sampled them, now and as two charts."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from provisioning.models import UsageSample
from slices import services
from slices.models import VM, Slice

from .conftest import login, shot, wait_ready

pytestmark = pytest.mark.browser


def test_a_running_vms_card_charts_its_cpu_and_memory(page, ui_user, inventory):
    worker = inventory["hosts"][0]
    s = services.slice_create(owner=ui_user, name="watched")
    vm = services.vm_create(slice_obj=s, name="vm1")
    quiet = services.vm_create(slice_obj=s, name="vm2")
    Slice.objects.filter(pk=s.pk).update(status="active")
    VM.objects.filter(slice=s).update(status="running", host=worker)
    now = timezone.now()
    for i, (share, mem) in enumerate([(None, 40), (12.5, 60), (80.0, 90), (50.0, 92)]):
        UsageSample.objects.create(
            host=worker,
            vm=vm,
            taken_at=now - timedelta(minutes=3 - i),
            uptime=100.0 + 60 * i,
            pid=4242,
            cpu_ticks=1000 * i,
            cpu_percent=share,
            mem_mib=mem,
        )
    login(page, ui_user)
    page.goto(f"/slices/{s.pk}/")
    wait_ready(page)
    page.locator(f'[data-element="vm-{vm.pk}"]').click()
    card = page.get_by_test_id("vm-usage")
    expect(card.get_by_test_id("vm-usage-cpu")).to_have_text("50 % of 100 % (1 vCPU)")
    expect(card.get_by_test_id("vm-usage-mem")).to_have_text(f"92 MiB of {vm.flavor.ram_mib} MiB")
    expect(card.locator("svg polyline")).to_have_count(2)  # one line each: the first sample has no CPU share
    expect(card).to_contain_text("4 samples over the last 24 h")
    shot(page, "designer-vm-usage")
    # A VM with no sample yet says when one comes.
    page.locator(f'[data-element="vm-{quiet.pk}"]').click()
    expect(page.get_by_test_id("vm-usage")).to_contain_text("No sample yet")
    assert page.console.unexpected() == []
