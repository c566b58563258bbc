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

from .models import VM
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
