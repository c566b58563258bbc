"""The lab hosts' SSH host keys: the lab's own known-hosts file, and which setting trusts it. No Django.

``lab up`` writes the keys into ``LAB_DIR/ssh/known_hosts`` (:attr:`LabPaths.known_hosts`),
never into a checkout's file: the lab is machine-wide, so any checkout on the
machine may deploy to it, and ``settings.PROVISIONING_KNOWN_HOSTS`` lists the
lab's file by default. Lines are marked with ``KNOWN_HOSTS_MARKER``.
"""

from __future__ import annotations

import os
from pathlib import Path

from provisioning.lab.topology import HOSTS, KNOWN_HOSTS_MARKER, LabPaths


def _is_lab_line(line: str) -> bool:
    fields = line.split()
    if len(fields) < 3 or line.lstrip().startswith("#"):
        return False
    if KNOWN_HOSTS_MARKER in fields[3:]:
        return True
    lab_addresses = {str(h.management_address) for h in HOSTS}
    return any(
        name in lab_addresses or name.strip("[]").split("]:")[0] in lab_addresses for name in fields[0].split(",")
    )


def write_known_hosts(path: Path, entries: dict[str, str]) -> None:
    """Replace the lab's lines in ``path`` by ``entries`` (address -> "type key"); keep the rest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = []
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if line.strip() and not _is_lab_line(line)]
    lines = kept + [f"{address} {key} {KNOWN_HOSTS_MARKER}" for address, key in sorted(entries.items())]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o644)
    tmp.replace(path)


def remove_known_hosts(path: Path) -> None:
    """Remove the lab's lines from ``path`` (the file stays, even when empty)."""
    if path.exists():
        write_known_hosts(path, {})


def untrusted_hint(paths: LabPaths, setting: str) -> str | None:
    """What to run when ``setting`` (PROVISIONING_KNOWN_HOSTS) does not list the lab's host keys; else None."""
    listed = {Path(item).resolve() for item in setting.split(os.pathsep) if item}
    if paths.known_hosts.resolve() in listed:
        return None
    return (
        f"PROVISIONING_KNOWN_HOSTS={setting} does not list the lab's host keys, {paths.known_hosts}: "
        "deploys to the lab fail with 'unknown host key'. Unset PROVISIONING_KNOWN_HOSTS (the default "
        f"lists the lab's file) or add it: PROVISIONING_KNOWN_HOSTS={paths.known_hosts}{os.pathsep}{setting}"
    )
