"""The NoCloud seed of a cloud-init VM: its three files (pure) and the step that builds its disk on the worker.

- :func:`nocloud_seed`: ``meta-data``, ``user-data`` and ``network-config`` (v2) of one VM,
  written with a YAML library (a key comment full of ``: # ' " $( ) & ;`` stays one string).
- :func:`seed_command`: a vfat disk labelled ``cidata`` holding them (``mkfs.vfat -n cidata``
  + ``mcopy``, no mount), rebuilt only when its content hash changes; QEMU attaches it read-only.

Network: DHCP only on NICs that have a VLAN. Only the internet NIC (VLAN 400) takes routes
(its default route via 10.60.7.1) and DNS from DHCP; data links take their address only
(``use-routes: false``), so a guest with three links has one default route at most, or none.
"""

from __future__ import annotations

import hashlib

import yaml

from slices.ipam import INTERNET_VLAN

from .layout import vm_files
from .model import HostCommand
from .shell import sh
from .spec import VmSpec, WorkerSpec

SEED_LABEL = "cidata"
# The seed's size: 1 MiB holds the three files (a few kB even with many keys).
SEED_KIB = 1024
# Builds DIR/seed.img from the files' contents ($3..$5), stamps it with HASH ($2); a temp dir, then mv.
SH_BUILD_SEED = (
    'd=$1; h=$2; t="$d/seed.tmp"; rm -rf "$t" && mkdir -p "$t" || exit 1; '
    'printf "%s" "$3" > "$t/meta-data" && printf "%s" "$4" > "$t/user-data" && '
    'printf "%s" "$5" > "$t/network-config" || exit 1; '
    f'mkfs.vfat -C -n {SEED_LABEL} "$t/seed.img" {SEED_KIB} >/dev/null || exit 1; '
    'MTOOLS_SKIP_CHECK=1 mcopy -i "$t/seed.img" "$t/meta-data" "$t/user-data" "$t/network-config" ::/ || exit 1; '
    'chmod 0600 "$t/seed.img" && mv -f "$t/seed.img" "$d/seed.img" && printf "%s\\n" "$h" > "$d/seed.hash" '
    '&& exec rm -rf "$t"'
)
SH_SEED_CURRENT = '[ -f "$1/seed.img" ] && [ "$(cat "$1/seed.hash" 2>/dev/null)" = "$2" ]'


def _dump(data: dict) -> str:
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False, allow_unicode=False, width=1 << 16)


def meta_data(vm: VmSpec) -> str:
    assert vm.seed is not None
    return _dump({"instance-id": vm.seed.instance_id, "local-hostname": vm.name})


def user_data(vm: VmSpec) -> str:
    """The default user with the owner's keys (as at the VM's first deploy) and its console password (hashed)."""
    seed = vm.seed
    assert seed is not None
    user = {
        "name": vm.image.default_user,
        "shell": "/bin/bash",
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "lock_passwd": not seed.password_hash,
    }
    if seed.password_hash:
        user["hashed_passwd"] = seed.password_hash
    user["ssh_authorized_keys"] = list(seed.keys)
    config = {
        "hostname": vm.name,
        "users": [user],
        "ssh_pwauth": False,  # keys over SSH; the password is for the serial console only
        "disable_root": True,
        # One host key: every OpenSSH client speaks ed25519, and an RSA key takes long to make under TCG.
        "ssh_genkeytypes": ["ed25519"],
    }
    return "#cloud-config\n" + _dump(config)


def network_config(vm: VmSpec) -> str:
    """Network config v2: every NIC by MAC as ethN; DHCP where a VLAN is; routes only from VLAN 400."""
    ethernets: dict[str, dict] = {}
    for nic in vm.nics:
        name = f"eth{nic.index}"
        entry: dict = {"match": {"macaddress": nic.mac}, "set-name": name}
        if nic.vlan == INTERNET_VLAN:
            entry["dhcp4"] = True
        elif nic.vlan is not None:
            entry["dhcp4"] = True
            entry["dhcp4-overrides"] = {"use-routes": False, "use-dns": False}
        else:  # no VLAN: a dead interface, nothing to ask and nothing to wait for
            entry["dhcp4"] = False
            entry["optional"] = True
        entry["dhcp6"] = False
        if nic.vlan != INTERNET_VLAN:  # no IPv6 default route from a link either (a guest's router advertisement)
            entry["accept-ra"] = False
        ethernets[name] = entry
    return _dump({"version": 2, "ethernets": ethernets})


def nocloud_seed(vm: VmSpec) -> dict[str, str]:
    """The seed's files by name (the VM's image must be a cloud-init image and the VM must have its seed)."""
    if vm.seed is None or not vm.image.cloud_init:
        raise ValueError(f"VM {vm.name} has no cloud-init seed")
    return {"meta-data": meta_data(vm), "user-data": user_data(vm), "network-config": network_config(vm)}


def seed_digest(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return digest.hexdigest()[:32]


def seed_command(worker: WorkerSpec, vm: VmSpec) -> HostCommand:
    """Build the VM's ``cidata`` disk unless the one there has the same content hash."""
    files = nocloud_seed(vm)
    digest = seed_digest(files)
    path = vm_files(worker, vm)
    return HostCommand(
        sh(SH_BUILD_SEED, "sp-seed", path.dir, digest, files["meta-data"], files["user-data"], files["network-config"]),
        f"Cloud-init seed of {vm.name} (cidata: hostname, {len(vm.seed.keys)} key(s), network) {digest[:12]}",
        check=sh(SH_SEED_CURRENT, "sp-seed-current", path.dir, digest),
        undo=("rm", "-f", path.seed, f"{path.dir}/seed.hash"),
        undo_description=f"Remove the cloud-init seed of {vm.name}",
        vm=vm.id,
    )
