"""The NoCloud seed of a cloud-init VM: its exact files, safe quoting, and the plan step that builds it."""

import subprocess

import pytest
import yaml

from provisioning.plans import ImageSpec, NicSpec, SeedSpec, VmSpec, WorkerSpec, deploy_plan, validate_spec
from provisioning.plans.seed import nocloud_seed, seed_command
from provisioning.plans.spec import PlanError
from provisioning.plans.worker import qemu_argv

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMomW5BjmH3yiiOaJlVQyOnN5me5ajZnzTDyRaYl8GWG alice@laptop"
HASH = "$6$saltsalt$" + "a" * 86
# A comment made of what breaks shells and YAML: quotes, $( ), backticks, ; & |, ": ", " #", braces, a leading "!".
HOSTILE_COMMENT = """!x "a" 'b' $(id) `id` ; rm -rf / & | > a: b #c {d: [e]} *f &g \\n"""
HOSTILE_KEY = KEY.rsplit(" ", 1)[0] + " " + HOSTILE_COMMENT

DEBIAN = ImageSpec(kind="disk", disk_path="/var/lib/images/debian12.qcow2", cloud_init=True, default_user="debian")
WORKER = WorkerSpec("worker1", "/var/lib/slice-portal")


def three_nic_vm(keys=(KEY,)) -> VmSpec:
    """eth0 on VLAN 400 (internet), eth1 on link VLAN 101, eth2 with no VLAN."""
    return VmSpec(
        id=7,
        name="vm1",
        host="worker1",
        vcpus=1,
        ram_mib=256,
        image=DEBIAN,
        nics=(
            NicSpec(0, "52:54:00:00:00:01", 400, "tap_7_eth0", "10.60.7.10"),
            NicSpec(1, "52:54:00:00:00:02", 101, "tap_7_eth1"),
            NicSpec(2, "52:54:00:00:00:03", None, "tap_7_eth2"),
        ),
        seed=SeedSpec("slice-portal-vm7", tuple(keys), HASH),
    )


def test_exact_files_of_a_three_nic_vm():
    files = nocloud_seed(three_nic_vm())
    assert files["meta-data"] == "instance-id: slice-portal-vm7\nlocal-hostname: vm1\n"
    assert files["user-data"] == (
        "#cloud-config\n"
        "hostname: vm1\n"
        "users:\n"
        "- name: debian\n"
        "  shell: /bin/bash\n"
        "  sudo: ALL=(ALL) NOPASSWD:ALL\n"
        "  lock_passwd: false\n"
        f"  hashed_passwd: {HASH}\n"
        "  ssh_authorized_keys:\n"
        f"  - {KEY}\n"
        "ssh_pwauth: false\n"
        "disable_root: true\n"
        "ssh_genkeytypes:\n"
        "- ed25519\n"
    )
    assert files["network-config"] == (
        "version: 2\n"
        "ethernets:\n"
        "  eth0:\n"
        "    match:\n"
        "      macaddress: '52:54:00:00:00:01'\n"
        "    set-name: eth0\n"
        "    dhcp4: true\n"
        "    dhcp6: false\n"
        "  eth1:\n"
        "    match:\n"
        "      macaddress: '52:54:00:00:00:02'\n"
        "    set-name: eth1\n"
        "    dhcp4: true\n"
        "    dhcp4-overrides:\n"
        "      use-routes: false\n"
        "      use-dns: false\n"
        "    dhcp6: false\n"
        "    accept-ra: false\n"
        "  eth2:\n"
        "    match:\n"
        "      macaddress: '52:54:00:00:00:03'\n"
        "    set-name: eth2\n"
        "    dhcp4: false\n"
        "    optional: true\n"
        "    dhcp6: false\n"
        "    accept-ra: false\n"
    )


def test_only_the_internet_nic_may_bring_a_default_route():
    net = yaml.safe_load(nocloud_seed(three_nic_vm())["network-config"])["ethernets"]
    takes_routes = [n for n, e in net.items() if e["dhcp4"] and e.get("dhcp4-overrides", {}).get("use-routes", True)]
    assert takes_routes == ["eth0"]


def test_a_hostile_key_comment_stays_one_string():
    vm = three_nic_vm(keys=(HOSTILE_KEY, KEY))
    validate_spec_of(vm)
    files = nocloud_seed(vm)
    assert files["user-data"].startswith("#cloud-config\n")
    data = yaml.safe_load(files["user-data"])
    assert data["users"][0]["ssh_authorized_keys"] == [HOSTILE_KEY, KEY]
    assert set(data) == {"hostname", "users", "ssh_pwauth", "disable_root", "ssh_genkeytypes"}


def test_the_seed_step_builds_a_cidata_disk_and_is_skipped_when_unchanged(tmp_path):
    """The step's shell program, run for real: a vfat labelled cidata with the three files; its check then passes."""
    worker = WorkerSpec("worker1", str(tmp_path))
    vm = three_nic_vm(keys=(HOSTILE_KEY,))
    cmd = seed_command(worker, vm)
    vm_dir = tmp_path / "vms" / "vm7"
    vm_dir.mkdir(parents=True)
    assert subprocess.run(cmd.check, capture_output=True).returncode != 0
    subprocess.run(cmd.argv, check=True, capture_output=True)
    image = vm_dir / "seed.img"
    label = subprocess.run(["fatlabel", str(image)], capture_output=True, text=True).stdout.strip()
    assert label.lower() == "cidata"
    for name, content in nocloud_seed(vm).items():
        out = subprocess.run(
            ["mtype", "-i", str(image), f"::{name}"],
            capture_output=True,
            text=True,
            check=True,
            env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
        )
        assert out.stdout == content
    assert subprocess.run(cmd.check).returncode == 0
    # A changed input (a key added) changes the hash: the check fails, the step would rebuild.
    changed = seed_command(worker, three_nic_vm(keys=(HOSTILE_KEY, KEY)))
    assert subprocess.run(changed.check).returncode != 0
    assert "seed.img" in " ".join(cmd.undo)


def validate_spec_of(vm: VmSpec):
    from provisioning.plans import NetnodeSpec, SliceSpec, VlanSpec

    spec = SliceSpec(
        slice_id=1,
        slice_name="lab",
        netnode=NetnodeSpec("netnode", "ens3", "/var/lib/slice-portal"),
        workers=(WorkerSpec("worker1", "/var/lib/slice-portal"),),
        vms=(vm,),
        vlans=(VlanSpec(101, "10.64.101.0/24"),),
        internet=True,
    )
    return validate_spec(spec)


def test_deploy_plan_builds_the_seed_before_qemu_and_qemu_attaches_it():
    spec = validate_spec_of(three_nic_vm())
    plan = deploy_plan(spec)
    cmds = [c for stage in plan.stages for phase in stage.phases for c in phase.commands]
    names = [c.description for c in cmds]
    seed_at = next(i for i, d in enumerate(names) if d.startswith("Cloud-init seed of vm1"))
    qemu_at = next(i for i, d in enumerate(names) if d.startswith("Start QEMU for vm1"))
    assert seed_at < qemu_at
    argv = qemu_argv(WORKER, three_nic_vm(), "lab")
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert drives == [
        "file=/var/lib/slice-portal/vms/vm7/disk.qcow2,if=virtio,format=qcow2",
        "file=/var/lib/slice-portal/vms/vm7/seed.img,if=virtio,format=raw,readonly=on",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "ssh-ed25519 AAAA\nrm -rf /",
        "ssh-dss AAAAB3NzaC1kc3M",
        "ssh-ed25519 AAAA x\x00y",
        "ssh-ed25519",
    ],
)
def test_a_spec_refuses_a_key_line_that_is_not_one_key(bad):
    with pytest.raises(PlanError, match="bad SSH key"):
        validate_spec_of(three_nic_vm(keys=(bad,)))


def test_a_non_cloud_init_image_gets_no_seed():
    vm = three_nic_vm()
    plain = VmSpec(**{**vm.__dict__, "image": ImageSpec(kind="disk", disk_path="/x.qcow2"), "seed": None})
    argv = qemu_argv(WORKER, plain, "lab")
    assert not any("seed.img" in a for a in argv)
