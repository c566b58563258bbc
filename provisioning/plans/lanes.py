"""Lanes: how a plan's phases travel to their hosts, one lane of round trips per host.

A plan's stages say what comes before what **on one host** (QEMU stopped before its
TAPs go; TAPs and ports in place before QEMU starts). Between hosts almost nothing
waits: a worker starts its VMs as soon as its own ports are in place while the network
node builds the VLANs (a booting guest asks DHCP seconds later and retries, see
provisioning/lab/guest_init.sh). So each host gets a **lane**: its phases in plan
order, sent in as few round trips (**trips**) as possible, hosts in parallel. A new
trip starts only where the lane must pause:

- at a phase on a resource other slices share (``Phase.shared``: the isolation chains,
  VLAN 400 + NAT): such phases travel in trips of their own, which the executor runs
  under the network node's shared-phase lock (re-checking a shared teardown there), so
  that only they are serialised between jobs, not the slice's own VLANs nor workers;
- at a phase that needs the other hosts' earlier stages (``Phase.after_network``: a
  link bounce makes a running guest ask DHCP at once): that trip waits until every
  lane has finished its trips of the ``stop`` and ``network`` stages.

Pure: no Django, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import STAGE_NETWORK, STAGE_STOP
from .model import Plan


@dataclass(frozen=True)
class Trip:
    """One round trip of one host: consecutive phases of its lane, sent as one script.

    ``phases``: (stage index, phase index) into the plan, in order. ``shared``: the trip
    holds shared phases only (run under the shared-phase lock). ``after_network``: it
    waits for every lane's ``network`` trips. ``network``: it holds a phase of the
    ``stop`` or ``network`` stage (what ``after_network`` trips wait for).
    """

    host: str
    phases: tuple[tuple[int, int], ...]
    shared: bool = False
    after_network: bool = False
    network: bool = False


def lanes(plan: Plan) -> dict[str, tuple[Trip, ...]]:
    """Each host's trips, in order (hosts in the plan's order)."""
    out: dict[str, list[Trip]] = {}
    for si, stage in enumerate(plan.stages):
        early = stage.name in (STAGE_STOP, STAGE_NETWORK)
        for pi, phase in enumerate(stage.phases):
            if not phase.commands:
                continue
            trips = out.setdefault(phase.host, [])
            last = trips[-1] if trips else None
            shared = bool(phase.shared)
            joins = (
                last is not None
                and last.shared == shared
                and (not phase.after_network or last.after_network)
                and not (last.after_network and early)
            )
            if joins:
                trips[-1] = Trip(
                    last.host, (*last.phases, (si, pi)), last.shared, last.after_network, last.network or early
                )
            else:
                trips.append(Trip(phase.host, ((si, pi),), shared, phase.after_network, early))
    return {host: tuple(trips) for host, trips in out.items()}


def round_trips(plan: Plan) -> dict[str, int]:
    """Round trips per host the plan takes (the counters a job reports)."""
    return {host: len(trips) for host, trips in lanes(plan).items()}
