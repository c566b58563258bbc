"""`manage.py hosts doctor` (issue 12) on the lab's hosts: all ok, then a broken host named with its fix."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from inventory.models import Host
from provisioning.doctor import run_doctor
from provisioning.lab import cluster
from provisioning.lab.topology import host

pytestmark = [pytest.mark.lab, pytest.mark.django_db]


@pytest.fixture
def doctor_lab(lab_inventory, lab, settings):
    settings.PROVISIONING_KNOWN_HOSTS = str(lab.known_hosts)
    return lab


def test_doctor_passes_on_the_lab_and_names_a_missing_br_int_with_its_fix(doctor_lab, capsys):
    lab = doctor_lab
    call_command("hosts", "doctor", "worker1", "netnode")
    out = capsys.readouterr().out
    print(out)  # the findings, for the log
    assert "WARN" not in out and "FAIL" not in out, out
    assert out.count(" 0 warn, 0 fail") == 2
    for seen in ("bridge br-int (datapath netdev)", "underlay trunk lab-trunk", "uplink ens3 up, 203.0.113.2/24"):
        assert seen in out, out

    lab.vsctl("worker1", "del-br", "br-int")  # an operator's slip: the bridge is gone
    try:
        with pytest.raises(CommandError, match="worker1: not ready"):
            call_command("hosts", "doctor", "worker1")
        out = capsys.readouterr().out
        assert "FAIL  br-int" in out and "fix: ovs-vsctl --may-exist add-br br-int" in out, out
        report = run_doctor(host=Host.objects.get(name="worker1"))
        assert {f.check for f in report.findings if f.status == "fail"} == {"br-int", "trunk"}
        assert report.round_trips == 1
    finally:
        cluster.prepare_bridge(lab.paths, host("worker1"))  # the lab's own host preparation puts it back
    call_command("hosts", "doctor", "worker1")
    assert " 0 warn, 0 fail" in capsys.readouterr().out
