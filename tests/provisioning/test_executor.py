"""The executor end to end over real SSH (local sshd), with echo stand-ins for the host commands.

Three Host rows (netnode, worker1, worker2) point at the local sshd with their
own state dirs; each command of the real plan is replaced by one that logs its
exact shell text on the "host" (tests/provisioning/echo_plans.py), so SSH,
scripts, markers, step rows, progress, observation and failure handling all run
for real without touching the machine's network. Real host commands run in the
lab tests (tests/lab).
"""

import itertools
from contextlib import nullcontext
from pathlib import Path

import pytest

from inventory.models import Host
from provisioning import executor, services
from provisioning.models import Deployment, DeploymentStep
from provisioning.plans import HostCommand, SliceSpec, lease_wait_command
from provisioning.runners import Event
from slices import services as slice_services
from slices.models import VM, Interface, Slice

from . import echo_plans
from .conftest import free_port, needs_sshd

pytestmark = needs_sshd


def no_lock(_name):
    return nullcontext()


def run(deployment, **kw):
    return executor.execute(deployment_id=deployment.pk, lock_factory=no_lock, **kw)


def six_vm_slice(make_slice, user, name="six"):
    """vm1..vm6 linked in a line (VLANs 100..104), vm1 with internet."""
    s = make_slice(user, name=name, vms=6, data=2)
    vms = list(VM.objects.filter(slice=s).order_by("name"))
    for a, b in itertools.pairwise(vms):
        slice_services.link_connect(slice_obj=s, vm_a=a, vm_b=b)
    slice_services.vm_update(vm=vms[0], internet_enabled=True)
    return s


def log_lines(host: Host) -> list[str]:
    path = Path(host.state_dir) / "commands.log"
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def echo(monkeypatch):
    seen: list = []

    def install(**kw):
        echo_plans.install(monkeypatch=monkeypatch, seen=seen, **kw)
        return seen

    return install


def test_deploy_six_vms_on_two_workers(ssh_hosts, user, make_slice, echo, settings):
    seen = echo()
    s = six_vm_slice(make_slice, user)
    dep = services.deploy_request(slice_obj=s, user=user)
    spec = SliceSpec.from_dict(dep.spec)
    assert sorted(vm.host for vm in spec.vms) == ["worker1"] * 3 + ["worker2"] * 3
    # what the guests would have produced: one lease and one console log
    vm1 = spec.vms[0]
    netnode = ssh_hosts["netnode"]
    lease_dir = Path(netnode.state_dir) / "dhcp" / "v100"
    lease_dir.mkdir(parents=True)
    (lease_dir / "dnsmasq.leases").write_text(f"1999999999 {vm1.nics[1].mac} 10.64.100.10 vm1 *\n")
    console = Path(Host.objects.get(name=vm1.host).state_dir) / "vms" / f"vm{vm1.id}"
    console.mkdir(parents=True)
    (console / "console.log").write_text("SP: DHCP eth1 ok ip=10.64.100.10 router=10.64.100.1\nSP: READY\n")

    done = run(dep)

    assert done.status == "succeeded", done.error
    assert done.progress == 100 and done.error == ""
    s.refresh_from_db()
    assert s.status == "active"
    assert set(VM.objects.filter(slice=s).values_list("status", flat=True)) == {"running"}
    # every host got exactly the real plan's commands, in order
    (plan,) = seen
    for host, expected in echo_plans.real_shell_by_host(plan).items():
        assert log_lines(Host.objects.get(name=host)) == expected, host
    assert [st.name for st in plan.stages] == ["network", "vms"]
    # one row per step, all written, in order; observation at the end
    steps = list(DeploymentStep.objects.filter(deployment=done).order_by("seq"))
    assert len(steps) == plan.step_count() + 1 + 6  # + lease wait + 6 console tails
    assert {st.status for st in steps} == {"ok"}
    assert all(st.started and st.finished and st.finished >= st.started for st in steps)
    assert [st.phase for st in steps][-7:] == ["observe"] * 7
    # leases and consoles reached the models; the missing leases are listed, not a failure
    assert Interface.objects.get(mac=vm1.nics[1].mac).lease_address == "10.64.100.10"
    assert Interface.objects.filter(vm__slice=s, lease_address__isnull=False).count() == 1
    lease_step = next(st for st in steps if st.description.startswith("Wait up to"))
    assert f"lease {vm1.nics[1].mac} 10.64.100.10" in lease_step.output_tail
    assert lease_step.output_tail.count(" -\n") + lease_step.output_tail.endswith(" -") == 10
    assert "SP: READY" in VM.objects.get(pk=vm1.id).console_tail
    # the measured cost: one SSH connection per host, a handful of round trips
    stats = done.stats
    assert {h: (v["connections"], v["round_trips"]) for h, v in stats.items()} == {
        # isolation (shared, locked), link VLANs, VLAN 400 + NAT (shared, locked), lease observation
        "netnode": (1, 4),
        "worker1": (1, 2),  # TAPs, ports and QEMU in one round trip (its lane), console observation
        "worker2": (1, 2),
    }
    assert stats["worker1"]["ovs_vsctl"] == 1 and stats["worker2"]["ovs_vsctl"] == 1
    assert stats["netnode"]["ovs_vsctl"] == 2  # link VLAN ports + VLAN 400 ports
    print("measured per host:", stats)


def test_a_failing_step_stops_its_host_and_names_host_step_and_stderr(ssh_hosts, user, make_slice, echo):
    echo(fail="Start QEMU for vm2")
    s = six_vm_slice(make_slice, user)
    dep = services.deploy_request(slice_obj=s, user=user)
    vm2_host = next(vm.host for vm in SliceSpec.from_dict(dep.spec).vms if vm.name == "vm2")
    done = run(dep)
    assert done.status == "failed"
    assert done.error.startswith(f"{vm2_host}: step 'Start QEMU for vm2 (")
    assert "failed with exit code 3" in done.error and "Operation not permitted" in done.error
    s.refresh_from_db()
    assert s.status == "failed"
    failed = DeploymentStep.objects.get(deployment=done, status="failed")
    assert failed.host == vm2_host and failed.exit_code == 3 and "Operation not permitted" in failed.output_tail
    # steps after it on that host never ran; no observation after a failure
    later = DeploymentStep.objects.filter(deployment=done, host=vm2_host, seq__gt=failed.seq, phase="vms")
    assert {st.status for st in later} <= {"not_run"}  # never ran, and says so
    assert not DeploymentStep.objects.filter(deployment=done, phase="observe").exists()
    assert VM.objects.get(slice=s, name="vm2").status == "failed"
    # no rollback: the other worker's VMs were started and stay running; a retry continues
    retry = services.retry_deployment(deployment=done, user=user)
    assert retry.kind == "deploy" and retry.status == "queued"


def test_a_failed_network_node_leaves_a_slice_that_retry_and_destroy_repair(ssh_hosts, user, make_slice, echo):
    echo(fail="Start dnsmasq for VLAN 102")
    s = six_vm_slice(make_slice, user)
    done = run(services.deploy_request(slice_obj=s, user=user))
    assert done.status == "failed"
    assert done.error.startswith("netnode: step 'Start dnsmasq for VLAN 102 (")
    # the workers did not wait for the network node: they started every VM (no rollback)
    qemu = DeploymentStep.objects.filter(deployment=done, description__startswith="Start QEMU")
    assert qemu.count() == 6 and set(qemu.values_list("status", flat=True)) == {"ok"}
    after = DeploymentStep.objects.filter(deployment=done, host="netnode", description__startswith="Start dnsmasq")
    assert after.filter(status="not_run").exists()  # the rest of the network node's script never ran
    s.refresh_from_db()
    assert s.status == "failed"
    seen = echo()  # the network node works again
    retry = run(services.retry_deployment(deployment=done, user=user))
    assert retry.status == "succeeded", retry.error
    assert DeploymentStep.objects.filter(deployment=retry, host="netnode", status="ok").exists()
    gone = run(services.destroy_request(slice_obj=s, user=user))
    assert gone.status == "succeeded", gone.error
    s.refresh_from_db()
    assert s.status == "draft"
    for host, expected in echo_plans.real_shell_by_host(seen[-1]).items():
        assert log_lines(Host.objects.get(name=host))[-len(expected) :] == expected


def test_unreachable_host_fails_the_deployment_then_destroy_cleans_up(ssh_hosts, user, make_slice, echo):
    seen = echo()
    s = six_vm_slice(make_slice, user)
    Host.objects.filter(name="worker2").update(ssh_port=free_port())
    dep = services.deploy_request(slice_obj=s, user=user)
    done = run(dep)
    assert done.status == "failed"
    assert "worker2: cannot connect to 127.0.0.1:" in done.error
    s.refresh_from_db()
    assert s.status == "failed"
    # the reachable hosts ran their lanes; nothing ran on worker2
    assert log_lines(Host.objects.get(name="netnode"))
    assert not DeploymentStep.objects.filter(deployment=done, host="worker2").exclude(status="not_run").exists()
    # the host comes back; destroy removes the union of what may exist
    Host.objects.filter(name="worker2").update(ssh_port=ssh_hosts["netnode"].ssh_port)
    destroy = services.destroy_request(slice_obj=s, user=user)
    gone = run(destroy)
    assert gone.status == "succeeded", gone.error
    assert gone.plan["kind"] == "destroy"
    s.refresh_from_db()
    assert s.status == "draft"
    destroy_plan = seen[-1]
    assert [st.name for st in destroy_plan.stages] == ["stop", "network"]
    for host, expected in echo_plans.real_shell_by_host(destroy_plan).items():
        assert log_lines(Host.objects.get(name=host))[-len(expected) :] == expected


def test_destroy_keeps_what_another_slice_still_uses(ssh_hosts, user, other_user, make_slice, echo):
    seen = echo()
    s = six_vm_slice(make_slice, user)
    assert run(services.deploy_request(slice_obj=s, user=user)).status == "succeeded"
    other = make_slice(other_user, name="other", vms=1, internet=True)
    Slice.objects.filter(pk=other.pk).update(status="active")
    gone = run(services.destroy_request(slice_obj=s, user=user))
    assert gone.status == "succeeded", gone.error
    phases = [p.name for p in seen[-1].by_host()["netnode"]]
    # VLAN 400, NAT and the isolation chains stay for "other"; only this slice's reservations leave
    assert phases == ["leave-internet", "teardown-vlans"]
    assert not any("MASQUERADE" in line and "sp-ipt-delete" in line for line in log_lines(ssh_hosts["netnode"]))


def test_shared_teardown_is_rechecked_under_the_lock(inventory, user, other_user, make_slice):
    """Between planning and running, another slice started using VLAN 400: its teardown is skipped."""
    from provisioning import plans
    from provisioning.runners import DryRunRunner

    from .factories import spec as make_spec
    from .factories import vm

    s = make_slice(user, vms=1)
    dep = Deployment.objects.create(slice=s, kind="destroy", status="running")
    footprint = make_spec([vm(1, vlans=(400, None))], internet=True)
    plan = plans.destroy_plan(footprint)  # planned while nobody else needed anything
    other = make_slice(other_user, name="other", vms=1, internet=True)
    Slice.objects.filter(pk=other.pk).update(status="deploying")
    locks = []

    def lock(name):
        locks.append(name)
        return nullcontext()

    executor.Executor(dep, DryRunRunner(), lock_factory=lock).run_plan(plan, footprint)
    steps = DeploymentStep.objects.filter(deployment=dep)
    kept = steps.filter(phase__in=["teardown-internet", "teardown-isolation"])
    assert kept.count() > 0 and {st.status for st in kept} == {"skipped"}
    assert {st.output_tail for st in kept} == {
        f"kept: slice {other.pk} still uses VLAN 400 and NAT",
        f"kept: slice {other.pk} (deploying) is still on the network node",
    }
    assert steps.filter(phase="teardown-vms").exists()
    # only the network node's trips of shared phases take the lock (VLAN 400, then the isolation
    # chains after the slice's own VLANs), never the workers' nor the VLANs' trips
    assert locks == ["netnode", "netnode"]


def test_redeploy_tears_down_only_what_changed(ssh_hosts, user, make_slice, echo):
    seen = echo()
    s = six_vm_slice(make_slice, user)
    assert run(services.deploy_request(slice_obj=s, user=user)).status == "succeeded"
    vm6 = VM.objects.get(slice=s, name="vm6")
    slice_services.vm_delete(vm=vm6)
    slice_services.vm_create(slice_obj=s, name="vm7", data_interfaces_count=1)
    redo = run(services.redeploy_request(slice_obj=s, user=user))
    assert redo.status == "succeeded", redo.error
    plan = seen[-1]
    stop = plan.stages[0]
    assert stop.name == "stop" and [c.description for p in stop.phases for c in p.commands] == ["Stop QEMU of vm6"]
    teardown = [p.name for p in plan.stages[1].phases if p.teardown]
    # vm6's TAPs, the link guard of vm5.eth2 (it stays, off the link) and the vm5-vm6 VLAN
    assert sorted(teardown) == ["teardown-ports", "teardown-ports", "teardown-vlans"]
    unguarded = [c.description for p in plan.stages[1].phases if p.teardown for c in p.commands]
    assert any(d.startswith("Remove the guard flows of") and "vm5.eth2" in d for d in unguarded), unguarded
    vms = [c.description.split(" (")[0] for p in plan.stages[-1].phases for c in p.commands]
    starts = [d for d in vms if d.startswith("Start QEMU")]
    assert sorted(starts) == [f"Start QEMU for vm{i}" for i in (1, 2, 3, 4, 5, 7)]  # checks skip 1-5 on a real host
    # vm5 keeps running, but its eth2 lost its link (VLAN -> none): its link is bounced, after the QEMU checks
    assert vms[-1] == "Bounce the link of vm5.eth2" and len(vms) == len(starts) + 1


def test_dry_run_deploy_records_without_running(ssh_hosts, user, make_slice):
    s = six_vm_slice(make_slice, user)
    dep = services.deploy_request(slice_obj=s, user=user, dry_run=True)
    done = run(dep)
    assert done.status == "succeeded"
    assert {st.status for st in DeploymentStep.objects.filter(deployment=done)} == {"skipped"}
    assert not any(log_lines(h) for h in Host.objects.all())
    s.refresh_from_db()
    assert s.status == "draft" and VM.objects.filter(slice=s, host__isnull=True).count() == 6
    assert done.stats["worker1"]["round_trips"] == 1  # ports + vms, its lane (no observation in a dry run)


def test_kvm_is_probed_over_ssh_once_and_remembered(ssh_hosts, user, make_slice, echo):
    echo()
    Host.objects.filter(role="worker").update(accel="auto")
    s = make_slice(user, vms=2)
    dep = services.deploy_request(slice_obj=s, user=user)
    done = run(dep)
    assert done.status == "succeeded", done.error
    probes = DeploymentStep.objects.filter(deployment=done, phase="probe")
    assert probes.count() == 2 and all(p.output_tail.startswith("accel=") for p in probes)
    detected = set(Host.objects.filter(role="worker").values_list("accel_detected", flat=True))
    assert detected <= {"kvm", "tcg"} and len(detected) == 1
    accel = detected.pop()
    assert {w.accel for w in SliceSpec.from_dict(done.spec).workers} == {accel}
    qemu = DeploymentStep.objects.filter(deployment=done, phase="vms").first()
    assert f"({'1 vCPU'}, 128 MiB, {accel}," in qemu.description
    # the next job does not probe again
    Slice.objects.filter(pk=s.pk).update(status="active")
    again = run(services.redeploy_request(slice_obj=s, user=user))
    assert not DeploymentStep.objects.filter(deployment=again, phase="probe").exists()


def test_a_deployment_runs_once(ssh_hosts, user, make_slice, echo):
    echo()
    s = make_slice(user, vms=1)
    dep = services.deploy_request(slice_obj=s, user=user)
    assert run(dep).status == "succeeded"
    count = DeploymentStep.objects.filter(deployment=dep).count()
    assert run(dep).status == "succeeded"  # a second delivery of the job does nothing
    assert DeploymentStep.objects.filter(deployment=dep).count() == count


def test_lease_wait_is_bounded(ssh_hosts, user, make_slice, echo, settings):
    import time

    echo()
    settings.PROVISIONING_LEASE_WAIT = 2
    s = make_slice(user, vms=2)
    vm1, vm2 = VM.objects.filter(slice=s).order_by("name")
    slice_services.link_connect(slice_obj=s, vm_a=vm1, vm_b=vm2)
    dep = services.deploy_request(slice_obj=s, user=user)
    started = time.monotonic()
    done = run(dep)
    assert done.status == "succeeded"
    assert 2 <= time.monotonic() - started < 30
    wait = DeploymentStep.objects.get(deployment=done, description__startswith="Wait up to")
    assert wait.status == "ok" and wait.output_tail.count(" -") == 2
    assert lease_wait_command(SliceSpec.from_dict(done.spec), 2) is not None
    assert Deployment.objects.get(pk=dep.pk).status == "succeeded"


def test_step_book_progress_waits_for_the_plan_and_revisions_grow(inventory, user, make_slice):
    """A probe that ends before the plan exists must not show 99 %; every row write gets a new revision."""
    dep = Deployment.objects.create(slice=make_slice(user, vms=1), kind="deploy", status="running")
    book = executor.StepBook(dep)
    (probe,) = book.add("worker1", "probe", [HostCommand(("true",), "probe")])
    book.began(probe)
    book.flush()  # the end of a burst of events
    book.ended(probe, Event("ended", "worker1", 0, status="ok", exit_code=0))
    book.flush()
    dep.refresh_from_db()
    assert dep.progress == 0
    ids = book.add("worker1", "ports", [HostCommand(("true",), f"step {i}") for i in range(3)])
    book.planned = True
    book.ended(ids[0], Event("ended", "worker1", 0, status="ok", exit_code=0))
    book.flush()
    dep.refresh_from_db()
    assert dep.progress == 50  # 2 of 4 rows
    revisions = dict(DeploymentStep.objects.filter(deployment=dep).values_list("pk", "revision"))
    assert revisions[probe] == 3 and revisions[ids[0]] == 5 and revisions[ids[1]] == revisions[ids[2]] == 4


def test_a_session_lost_during_the_lease_wait_fails_the_deployment_and_a_redeploy_fills_the_leases_in(
    ssh_hosts, user, make_slice, echo, monkeypatch
):
    """Issue 16 #11: the netnode's session died in the lease wait, its lane showed failed, yet the deployment
    said succeeded (100 %) with no lease recorded, and a redeploy did not fill them in."""
    from provisioning import plans

    from .test_runner_ssh import KILL_SESSION

    echo()
    real_wait = plans.lease_wait_command

    def dying_wait(spec, timeout, *args, **kw):
        cmd = real_wait(spec, timeout, *args, **kw)
        return HostCommand(("sh", "-c", KILL_SESSION), cmd.description) if cmd else None

    monkeypatch.setattr(plans, "lease_wait_command", dying_wait)
    s = make_slice(user, vms=2)
    vm1, vm2 = VM.objects.filter(slice=s).order_by("name")
    slice_services.link_connect(slice_obj=s, vm_a=vm1, vm_b=vm2)
    done = run(services.deploy_request(slice_obj=s, user=user))
    assert done.status == "failed"
    assert done.error.startswith("netnode: during step 1 of 1 'Wait up to 1 s for DHCP leases of 2 interface(s)'")
    assert "connection lost" in done.error
    wait = DeploymentStep.objects.get(deployment=done, description__startswith="Wait up to")
    assert wait.status == "failed" and "connection lost" in wait.output_tail
    # the console tails were still read and recorded; the slice is failed
    assert {st.status for st in DeploymentStep.objects.filter(deployment=done, description__startswith="Console")} == {
        "ok"
    }
    assert set(VM.objects.filter(slice=s).values_list("console_tail", flat=True)) == {"(no console log yet)"}
    s.refresh_from_db()
    assert s.status == "failed"
    assert not Interface.objects.filter(vm__slice=s).exclude(lease_address=None).exists()

    # The session holds again; dnsmasq had handed out the reservations meanwhile: a redeploy records them.
    monkeypatch.setattr(plans, "lease_wait_command", real_wait)
    spec = SliceSpec.from_dict(done.spec)
    for v in spec.vlans:
        leases = Path(plans.dhcp_files(spec.netnode, v.vlan).leases)
        leases.parent.mkdir(parents=True, exist_ok=True)
        leases.write_text("".join(f"1999999999 {mac} {ip} guest *\n" for mac, ip in v.reservations))
    again = run(services.redeploy_request(slice_obj=s, user=user))
    assert again.status == "succeeded", again.error
    reserved = dict(Interface.objects.filter(vm__slice=s).exclude(ip_address=None).values_list("mac", "ip_address"))
    assert len(reserved) == 2
    assert dict(Interface.objects.filter(vm__slice=s, mac__in=reserved).values_list("mac", "lease_address")) == reserved


def test_a_lease_other_than_the_reservation_fails_the_deployment_naming_the_nic(ssh_hosts, user, make_slice, echo):
    """Issue 16 #17: dnsmasq that could not read its reservations handed out dynamic addresses; the
    deployment succeeded anyway."""
    from provisioning import plans

    echo()
    s = make_slice(user, vms=2)
    vm1, vm2 = VM.objects.filter(slice=s).order_by("name")
    slice_services.link_connect(slice_obj=s, vm_a=vm1, vm_b=vm2)
    dep = services.deploy_request(slice_obj=s, user=user)
    spec = SliceSpec.from_dict(dep.spec)
    (v,) = spec.vlans
    leases = Path(plans.dhcp_files(spec.netnode, v.vlan).leases)
    leases.parent.mkdir(parents=True, exist_ok=True)
    dynamic = str(plans.VlanSpec(v.vlan, v.subnet).network.network_address + 77)
    (mac1, _ip1), (mac2, ip2) = v.reservations
    leases.write_text(f"1999999999 {mac1} {dynamic} vm *\n1999999999 {mac2} {ip2} vm *\n")
    done = run(dep)
    assert done.status == "failed"
    assert done.error.startswith("netnode: step 'Wait up to 1 s for DHCP leases of 2 interface(s)' failed")
    nic = Interface.objects.get(mac=mac1)
    assert f"{nic.vm.name}.eth{nic.index} ({mac1}) got {dynamic}, not its reservation {_ip1}" in done.error
