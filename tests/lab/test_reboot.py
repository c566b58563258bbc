"""`manage.py lab reboot HOST` (issue 12): a lab host loses what a reboot takes and gets sshd and OVS back.

A one-VM slice is deployed with the portal's own plan and runner (no database, no RQ: the
fastest real deploy), then worker1 and the network node are rebooted in turn.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command

from provisioning.lab import system
from provisioning.lab.topology import DEFAULT_UPLINK, HOSTS
from provisioning.plans import (
    ImageSpec,
    NetnodeSpec,
    NicSpec,
    SliceSpec,
    VlanSpec,
    VmSpec,
    WorkerSpec,
    deploy_plan,
    destroy_plan,
    vm_files,
)
from provisioning.runners import FabricRunner, SshTarget
from slices.naming import tap_name

pytestmark = pytest.mark.lab

VM_ID, VLAN = 9901, 3901
TAP = tap_name(VM_ID, 1)


def one_vm_spec(lab) -> SliceSpec:
    """vm9901 on worker1: eth0 without a VLAN, eth1 on VLAN 3901 (a gateway port, a DHCP namespace, dnsmasq)."""
    worker = WorkerSpec("worker1", str(lab.paths.state_dir("worker1")), "tcg")
    image = ImageSpec(
        "kernel", kernel_path=str(lab.guest.kernel_path), initrd_path=str(lab.guest.initrd_path), kernel_args="quiet"
    )
    nics = tuple(NicSpec(i, f"52:54:00:26:ad:{i:02x}", vlan, tap_name(VM_ID, i)) for i, vlan in enumerate((None, VLAN)))
    return SliceSpec(
        slice_id=99,
        slice_name="reboot",
        netnode=NetnodeSpec("netnode", DEFAULT_UPLINK, str(lab.paths.state_dir("netnode"))),
        workers=(worker,),
        vms=(VmSpec(VM_ID, "rb1", "worker1", 1, 96, image, nics),),
        vlans=(VlanSpec(VLAN, "10.79.61.0/24"),),
    )


def run_plan(lab, plan) -> None:
    targets = {
        h.name: SshTarget(h.name, str(h.management_address), 22, "root", str(lab.paths.client_key)) for h in HOSTS
    }
    with FabricRunner(targets, known_hosts=str(lab.known_hosts), command_timeout=60) as runner:
        for stage in plan.stages:
            scripts = {host: [c for p in stage.phases_of(host) for c in p.commands] for host in stage.hosts()}
            bad = [e for e in runner.run_stage(scripts) if (e.kind == "host" and not e.ok) or e.status == "failed"]
            assert not bad, f"{plan.kind} stage {stage.name}: {bad}"


def sh(lab, host: str, command: str) -> tuple[bool, str]:
    with lab.connect(host) as connection:
        result = connection.run(command, hide=True, warn=True, timeout=20)
    return result.ok, result.stdout


@pytest.fixture(scope="module")
def deployed(lab_session):
    lab_session.ensure_up()
    spec = one_vm_spec(lab_session)
    run_plan(lab_session, deploy_plan(spec))
    yield spec
    run_plan(lab_session, destroy_plan(spec))  # from whatever the reboots left: destroy is tolerant


@pytest.fixture
def as_lab(lab_session, settings):
    settings.LAB_DIR = lab_session.paths.root  # what the command uses (the session may have chosen a shorter one)
    settings.PROVISIONING_KNOWN_HOSTS = str(lab_session.known_hosts)
    return lab_session


def test_reboot_worker1_ends_its_guest_and_taps_and_brings_sshd_and_ovs_back(deployed, as_lab, capsys):
    lab = as_lab
    pid_file = vm_files(deployed.workers[0], deployed.vms[0]).pidfile
    qemu = system.read_pid_file(Path(pid_file))
    assert qemu and system.pid_alive(qemu)
    assert sh(lab, "worker1", f"ip link show dev {TAP}")[0]

    call_command("lab", "reboot", "worker1")
    out = capsys.readouterr().out
    print(out)  # what went and how long it took, for the log
    assert "worker1 rebooted in" in out and "qemu-system-x86_64 x1" in out and TAP in out
    assert "worker1   healthy" in out

    assert not system.pid_alive(qemu)  # the guest is gone (its stale pid file stays, as on a real disk)
    ok, ports = sh(lab, "worker1", "ovs-vsctl br-exists br-int && ovs-vsctl list-ports br-int")  # sshd answers
    assert ok and TAP in ports.split()  # the OVS database kept the port, as real OVS does ...
    assert not sh(lab, "worker1", f"ip link show dev {TAP}")[0]  # ... but its TAP device is gone
    call_command("lab", "status")  # every host healthy (raises otherwise)


def test_reboot_netnode_ends_dnsmasq_and_its_dhcp_namespace(deployed, as_lab, capsys):
    lab = as_lab
    namespace = f"ns-dhcp-vlan{VLAN}"
    assert namespace in system.namespaces()
    assert sh(lab, "netnode", f"ip -4 addr show dev gw_v{VLAN}")[1].count("inet ") == 1

    call_command("lab", "reboot", "netnode")
    out = capsys.readouterr().out
    print(out)
    assert "dnsmasq x1" in out and namespace in out and "netnode   healthy" in out
    assert namespace not in system.namespaces()
    assert not [p for p in (lab.paths.state_dir("netnode") / "dhcp").rglob("dnsmasq.pid") if _alive(p, lab)]
    ok, out = sh(lab, "netnode", f"ovs-vsctl list-ports br-int && ip -4 addr show dev gw_v{VLAN}")
    assert ok and f"gw_v{VLAN}" in out.split() and "inet " not in out  # port back from the DB, its address gone
    assert sh(lab, "netnode", "cat /proc/sys/net/ipv4/ip_forward")[1].strip() == "0"
    call_command("lab", "status")


def _alive(pid_file, lab) -> bool:
    return system.pid_from_file(pid_file, must_mention=str(lab.paths.root)) is not None
