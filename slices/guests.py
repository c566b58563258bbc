"""What cloud-init VMs receive at their first deploy: the owner's SSH keys and a console password.

Both are fixed on the VM the first time a deploy is requested for it (``VM.seed_keys``,
``VM.console_password``), so that its NoCloud seed only changes when the VM does: a
redeploy of an unchanged slice rebuilds nothing, and the VM card can say exactly which
keys the guest received. A destroy forgets them (``VMQuerySet.mark_designed``): the next
deploy boots a fresh disk, which gets the keys of that moment.
"""

from __future__ import annotations

import secrets
import string
import subprocess
from dataclasses import dataclass

from .ipam import INTERNET_VLAN
from .models import VM
from .naming import dhcp_namespace
from .sshkeys import keys_of

PASSWORD_LENGTH = 16
# No look-alikes (0/O, 1/l/I): typed by hand on a serial console.
PASSWORD_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")


@dataclass(frozen=True)
class SeedInputs:
    """A VM's seed inputs: key lines (``TYPE BASE64 COMMENT``) and its console password's crypt hash."""

    keys: tuple[str, ...]
    password_hash: str


def new_console_password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def password_hash(password: str) -> str:
    """SHA-512 crypt (``$6$...``), what cloud-init's ``hashed_passwd`` and /etc/shadow take."""
    result = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True, check=True, timeout=10
    )
    return result.stdout.strip()


def key_records(*, owner) -> list[dict]:
    """The owner's keys as a VM records them: name, fingerprint and the line the guest trusts."""
    return [
        {"name": k.name, "fingerprint": k.fingerprint, "public_key": f"{k.public_key} {k.comment}".strip()}
        for k in keys_of(owner=owner)
    ]


def seed_inputs(*, slice_obj, save: bool = True) -> dict[int, SeedInputs]:
    """VM id -> seed inputs for every cloud-init VM of the slice; fixed now (``save``) for VMs that have none.

    ``save`` False (a dry run, a preview) shows what a deploy would give without keeping it
    (a VM that has none yet shows the keys of now and no password: none is made up for a preview).
    """
    out: dict[int, SeedInputs] = {}
    records = None
    for vm in VM.objects.filter(slice=slice_obj, image__cloud_init=True).select_related("slice"):
        if vm.seed_keys is None or not vm.console_password_hash:  # first deploy (or first since a destroy)
            if records is None:
                records = key_records(owner=slice_obj.owner)
            vm.seed_keys = records
            if not save:
                out[vm.pk] = SeedInputs(tuple(r["public_key"] for r in records), "")
                continue
            vm.console_password = new_console_password()
            vm.console_password_hash = password_hash(vm.console_password)
            if save:
                VM.objects.filter(pk=vm.pk).update(
                    seed_keys=vm.seed_keys,
                    console_password=vm.console_password,
                    console_password_hash=vm.console_password_hash,
                )
        out[vm.pk] = SeedInputs(tuple(r["public_key"] for r in vm.seed_keys), vm.console_password_hash)
    return out


def _address(nic) -> str | None:
    return nic.ip_address or nic.lease_address


def ssh_command(vm: VM) -> str | None:
    """The ``ssh`` an operator (or a jump host) runs on the network node to log in to a cloud-init VM.

    From the DHCP namespace of the VM's first link (``ns-dhcp-vlanV``, on the link's L2 segment):
    the network node's own namespace reaches no guest (its INPUT rules drop guest traffic), and
    VLAN 400's port security lets an internet NIC talk to its gateway only. None when the VM has
    no link with an address (an internet-only VM: reach it through a VM it links to, or its console).
    """
    if not vm.image.cloud_init:
        return None
    for nic in sorted(vm.interfaces.all(), key=lambda n: n.index):
        if nic.vlan is not None and nic.vlan != INTERNET_VLAN and _address(nic):
            return f"ip netns exec {dhcp_namespace(nic.vlan)} ssh {vm.image.default_user}@{_address(nic)}"
    return None


def guest_access(vm: VM) -> dict | None:
    """What the VM card shows for a cloud-init VM: user, addresses per NIC, the ssh command, the keys it received."""
    if not vm.image.cloud_init:
        return None
    return {
        "user": vm.image.default_user,
        "addresses": [
            {"interface": nic.name, "vlan": nic.vlan, "address": _address(nic)}
            for nic in sorted(vm.interfaces.all(), key=lambda n: n.index)
            if nic.vlan is not None
        ],
        "ssh": ssh_command(vm),
        "ssh_from": "the network node",
        "keys": (
            None
            if vm.seed_keys is None
            else [{"name": k["name"], "fingerprint": k["fingerprint"]} for k in vm.seed_keys]
        ),
        "has_console_password": bool(vm.console_password),
    }
