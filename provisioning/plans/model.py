"""Host commands as data, and the phases, stages and plans that order them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .constants import (
    OUTPUT_TAIL,
)

# --- Commands, phases, stages, plans ------------------------------------------------------


@dataclass(frozen=True)
class HostCommand:
    """One command for a host, as data.

    ``check``: exit 0 means "already in place" and the command is skipped.
    ``undo``: removes what the command made; tolerates "already gone".
    ``capture``: how many bytes of output the runner keeps.
    """

    argv: tuple[str, ...]
    description: str
    undo: tuple[str, ...] | None = None
    check: tuple[str, ...] | None = None
    undo_description: str = ""
    capture: int = OUTPUT_TAIL
    boots_vm: int | None = None  # the VM this command boots (QEMU start), for the executor's bookkeeping
    relinks: str | None = None  # the MAC of the running guest NIC this command bounces (its VLAN changed)
    vm: int | None = None  # the VM this command touches (its step row says so: the designer colours it)
    vlan: int | None = None  # the VLAN this command touches
    interruptible: bool = False  # read-only and long (a wait): a cancel may cut it short

    def undo_command(self) -> HostCommand | None:
        if self.undo is None:
            return None
        return HostCommand(self.undo, self.undo_description or f"Undo: {self.description}", vm=self.vm, vlan=self.vlan)

    def to_dict(self) -> dict:
        return {
            "argv": list(self.argv),
            "description": self.description,
            "undo": list(self.undo) if self.undo else None,
            "check": list(self.check) if self.check else None,
        }


@dataclass(frozen=True)
class Phase:
    """An ordered list of commands for one host. ``shared``: a resource other slices use too.

    ``after_network``: the phase needs every host's earlier stages done, not only its own
    host's (a link bounce makes a running guest ask DHCP at once, so its new VLAN's
    dnsmasq on the network node must be up): see :mod:`.lanes`.
    """

    name: str
    host: str
    commands: tuple[HostCommand, ...]
    shared: str | None = None
    teardown: bool = False
    after_network: bool = False


@dataclass(frozen=True)
class Stage:
    """Phases run together: one script per host, hosts in parallel."""

    name: str
    phases: tuple[Phase, ...]

    def hosts(self) -> list[str]:
        return list(dict.fromkeys(p.host for p in self.phases))

    def phases_of(self, host: str) -> tuple[Phase, ...]:
        return tuple(p for p in self.phases if p.host == host)


@dataclass(frozen=True)
class Plan:
    """Stages in order. ``by_host()`` gives the per-host view."""

    kind: str
    stages: tuple[Stage, ...] = field(default_factory=tuple)

    def hosts(self) -> list[str]:
        return list(dict.fromkeys(h for s in self.stages for h in s.hosts()))

    def by_host(self) -> dict[str, list[Phase]]:
        out: dict[str, list[Phase]] = {}
        for stage in self.stages:
            for phase in stage.phases:
                out.setdefault(phase.host, []).append(phase)
        return out

    def step_count(self) -> int:
        return sum(len(p.commands) for s in self.stages for p in s.phases)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "stages": [
                {
                    "name": s.name,
                    "phases": [
                        {
                            "name": p.name,
                            "host": p.host,
                            "shared": p.shared,
                            "teardown": p.teardown,
                            "commands": [c.to_dict() for c in p.commands],
                        }
                        for p in s.phases
                    ],
                }
                for s in self.stages
            ],
        }


def touching(
    commands: Iterable[HostCommand], *, vm: int | None = None, vlan: int | None = None
) -> tuple[HostCommand, ...]:
    """The commands, marked as touching ``vm`` and/or ``vlan`` (their step rows say so)."""
    marks = {k: v for k, v in (("vm", vm), ("vlan", vlan)) if v is not None}
    return tuple(replace(c, **marks) for c in commands)
