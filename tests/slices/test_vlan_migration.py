"""Migration 0005: VLAN blocks become single held VLANs without giving away one still on the hosts."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

BEFORE = [("slices", "0004_mac_pattern_strict")]
AFTER = [("slices", "0005_slice_vlans")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_blocks_become_the_vlans_a_slice_may_still_have_on_the_hosts(user, flavor, image):
    old = _migrate(BEFORE)
    Slice, VM, Interface = (old.get_model("slices", n) for n in ("Slice", "VM", "Interface"))
    Link, VlanBlock = old.get_model("slices", "Link"), old.get_model("slices", "VlanBlock")

    def slice_with_link(name, status, vlan, block_index, first, last):
        s = Slice.objects.create(owner_id=user.pk, name=name, status=status)
        ends = []
        for n in (1, 2):
            vm = VM.objects.create(slice=s, name=f"vm{n}", flavor_id=flavor.pk, image_id=image.pk)
            ends.append(Interface.objects.create(vm=vm, index=1, mac=f"52:54:00:{block_index:02x}:00:0{n}", vlan=vlan))
        Link.objects.create(slice=s, a=ends[0], b=ends[1], vlan=vlan, subnet="x")
        VlanBlock.objects.create(slice=s, index=block_index, first_vlan=first, last_vlan=last)
        return s.pk

    draft = slice_with_link("draft", "draft", 101, 0, 100, 115)
    active = slice_with_link("active", "active", 390, 18, 388, 403)  # a block around VLAN 400

    new = _migrate(AFTER)
    held = dict(new.get_model("slices", "SliceVlan").objects.values_list("vlan", "slice_id"))
    # the draft keeps only its link's VLAN (nothing of it is on the hosts): 15 VLANs freed at once
    assert sorted(v for v, s in held.items() if s == draft) == [101]
    # the deployed slice keeps its whole block (but never VLAN 400) until a destroy gives it back
    assert sorted(v for v, s in held.items() if s == active) == [v for v in range(388, 404) if v != 400]
