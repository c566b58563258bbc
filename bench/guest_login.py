"""Benchmark 7 — a Debian cloud-init VM from the deploy request to an SSH login, beside the busybox guest.

Two VMs on one link, one per worker, deployed through the portal (``POST .../deploy/``, the
real RQ worker, Fabric to the lab hosts):

- **busybox** (the lab's default guest): the clock stops when both VMs have their lease and
  pinged each other (benchmark 3's readiness test);
- **debian12** (``manage.py lab image debian``, cloud-init): the clock stops when both VMs
  accept an SSH login with the owner's key, run from the network node's link namespace
  exactly as the VM card says (``ip netns exec ns-dhcp-vlanV ssh debian@IP``); the time at
  which cloud-init's ``boot-finished`` appeared is printed too.

Guests run under TCG here (no KVM), 1 vCPU each; Debian gets 512 MiB, busybox 128 MiB.

Run (root):  .venv/bin/python bench/guest_login.py
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from common import log, machine, make_user, ring_slice, scratch_database, table
from labkit import (
    LabSession,
    RqWorker,
    api_action,
    api_client,
    assert_fresh,
    deployment_gave_up,
    destroy_quietly,
    host_pid,
    require_root,
    ring_ends,
    wait_deployment,
    wait_ready,
)

SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
SSH_OPTIONS += ["-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]
LOGIN_TIMEOUT = 900.0


def ssh_ok(command_line: str, key: Path, remote: str, *, netnode_pid: int) -> bool:
    """The VM card's ssh command run on the network node (its sshd's network and mount namespaces):
    the DHCP namespaces are made inside the network node's sessions and exist only there."""
    argv = command_line.split()
    full = ["nsenter", "-t", str(netnode_pid), "-m", "-n", *argv[:5], "-i", str(key), *SSH_OPTIONS, *argv[5:], remote]
    try:
        return subprocess.run(full, capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def busybox_run(slice_obj, client, worker) -> float:
    ends = ring_ends(slice_obj)
    assert_fresh(ends)
    t0 = time.monotonic()
    dep_id = api_action(client, slice_obj.pk, "deploy")
    ready = wait_ready(ends, t0, gave_up=deployment_gave_up(dep_id, worker))
    wait_deployment(dep_id, worker)
    wait_deployment(api_action(client, slice_obj.pk, "destroy"), worker)
    return ready


def debian_run(slice_obj, client, worker, key: Path, netnode_pid: int) -> tuple[float, float]:
    """(request -> every VM logged in over SSH, request -> every VM's cloud-init finished)."""
    from slices import guests
    from slices.models import VM

    t0 = time.monotonic()
    dep_id = api_action(client, slice_obj.pk, "deploy")
    dep = wait_deployment(dep_id, worker)
    if dep.status != "succeeded":
        raise RuntimeError(f"deploy failed: {dep.error}")
    commands = {
        vm.name: guests.ssh_command(vm)
        for vm in VM.objects.filter(slice=slice_obj).select_related("image").prefetch_related("interfaces")
    }
    logged_in: dict[str, float] = {}
    finished: dict[str, float] = {}
    while len(finished) < len(commands):
        if time.monotonic() - t0 > LOGIN_TIMEOUT:
            raise TimeoutError(f"logged in {sorted(logged_in)}, cloud-init finished on {sorted(finished)}")
        for name, command in commands.items():
            if name not in logged_in and ssh_ok(command, key, "true", netnode_pid=netnode_pid):
                logged_in[name] = time.monotonic() - t0
            if name in logged_in and name not in finished:
                if ssh_ok(command, key, "test -f /var/lib/cloud/instance/boot-finished", netnode_pid=netnode_pid):
                    finished[name] = time.monotonic() - t0
        time.sleep(2)
    wait_deployment(api_action(client, slice_obj.pk, "destroy"), worker)
    return max(logged_in.values()), max(finished.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up if this run brought it up")
    parser.add_argument("--take-over-lab", action="store_true", help="rebuild the lab even if another LAB_DIR has it")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the scratch database")
    args = parser.parse_args()
    require_root()
    print("# Benchmark 7: request -> SSH login of a Debian cloud-init VM, beside the busybox guest (2 VMs, 1 link)")
    print(f"# machine: {machine()}")
    with (
        scratch_database("guest_login", keep=args.keep_db),
        LabSession(keep_lab=args.keep_lab, take_over=args.take_over_lab) as lab,
        tempfile.TemporaryDirectory(prefix="bench-login-") as tmp,
        RqWorker(Path(tmp) / "rqworker.log") as worker,
    ):
        from inventory.models import Flavor, Host
        from provisioning.lab import debian, inventory
        from slices import sshkeys
        from slices.models import VM

        lab.probe_accel()
        started = time.monotonic()
        built = debian.ensure_debian(lab.paths.images_dir)
        image = inventory.register_debian_image(built.path, default_user=built.default_user)
        log(f"Debian image ready in {time.monotonic() - started:.1f} s ({built.path.stat().st_size >> 20} MiB)")
        flavor, _ = Flavor.objects.get_or_create(name="small", defaults={"vcpus": 1, "ram_mib": 512, "disk_gib": 2})
        user = make_user("bench-login", max_vms=8)
        key = Path(tmp) / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        sshkeys.key_add(owner=user, public_key=key.with_suffix(".pub").read_text(), name="bench")
        hosts = list(Host.objects.filter(name__in=["worker1", "worker2"]).order_by("name"))
        client = api_client(user)
        rows = []
        plain = ring_slice(user, "bb", 2, hosts=hosts)
        try:
            ready = busybox_run(plain, client, worker)
        except Exception:
            destroy_quietly(client, plain, worker)
            raise
        log(f"busybox: leased and pinging in {ready:.1f} s")
        rows.append(["busybox (kernel + initramfs)", "128 MiB", "leased + ping", ready, "-"])
        deb = ring_slice(user, "deb", 2, hosts=hosts)
        VM.objects.filter(slice=deb).update(image=image, flavor=flavor)
        try:
            login, done = debian_run(deb, client, worker, key, host_pid(lab, "netnode"))
        except Exception:
            destroy_quietly(client, deb, worker)
            raise
        log(f"debian12: SSH login in {login:.1f} s, cloud-init finished at {done:.1f} s")
        rows.append(
            ["debian12 (cloud-init, qcow2)", "512 MiB", "SSH login (owner's key)", f"{login:.1f}", f"{done:.1f}"]
        )
        print()
        print("# guests: TCG, 1 vCPU, 2 VMs on one link (worker1, worker2); seconds from the deploy request")
        print(table(["guest", "RAM", "ready when", "request -> ready s", "cloud-init finished s"], rows))


if __name__ == "__main__":
    main()
