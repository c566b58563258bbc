"""Lanes: each host's phases in as few round trips as possible, hosts in parallel (plans.lanes),
and the executor running them so that workers start their VMs while the network node builds."""

import threading

from provisioning import executor, plans, services
from provisioning.runners import DryRunRunner

from .factories import spec, two_vm_spec, vlan, vm
from .test_api import linked


def names(plan, lanes):
    """host -> [(phase names of the trip, shared, after_network)]."""
    return {
        host: [
            (tuple(plan.stages[si].phases[pi].name for si, pi in trip.phases), trip.shared, trip.after_network)
            for trip in trips
        ]
        for host, trips in lanes.items()
    }


def test_a_deploy_sends_each_worker_one_trip_and_the_shared_phases_apart():
    plan = plans.deploy_plan(spec([vm(1, "worker1", (400, 100)), vm(2, "worker2")], [vlan(100, 1, 2)], internet=True))
    assert names(plan, plans.lanes(plan)) == {
        "netnode": [(("isolation",), True, False), (("vlans",), False, False), (("internet",), True, False)],
        "worker1": [(("ports", "vms"), False, False)],  # QEMU right after its own ports, no wait
        "worker2": [(("ports", "vms"), False, False)],
    }
    assert plans.round_trips(plan) == {"netnode": 3, "worker1": 1, "worker2": 1}


def test_a_destroy_stops_and_unplugs_in_one_trip_per_worker():
    plan = plans.destroy_plan(two_vm_spec())
    lanes = names(plan, plans.lanes(plan))
    assert lanes["worker1"] == [(("teardown-vms", "teardown-ports"), False, False)]
    assert lanes["netnode"] == [(("teardown-vlans",), False, False), (("teardown-isolation",), True, False)]


def test_a_link_bounce_waits_for_the_network_node():
    """A running guest whose VLAN changed asks DHCP at once: its bounce waits for the new VLAN's dnsmasq."""
    old = two_vm_spec()
    new = spec([vm(1, "worker1", (None, 101)), vm(2, "worker2", (None, 101))], [vlan(101, 1, 2)])
    plan = plans.apply_plan(old, new)
    lanes = plans.lanes(plan)
    w1 = names(plan, lanes)["worker1"]
    assert w1[-1] == (("relink",), False, True) and all(not after for *_, after in w1[:-1])
    assert any(t.network for t in lanes["netnode"])


class NetnodeWaitsForQemu(DryRunRunner):
    """The network node's VLAN trip starts only once a worker has started a QEMU (or 10 s passed)."""

    def __init__(self):
        super().__init__()
        self.qemu = threading.Event()
        self.saw_qemu_first: bool | None = None

    def run_host(self, host, commands, emit):
        if any(c.description.startswith("Start dnsmasq") for c in commands):
            self.saw_qemu_first = self.qemu.wait(10)

        def watch(event):
            emit(event)
            if event.kind == "ended" and commands[event.index].description.startswith("Start QEMU"):
                self.qemu.set()

        super().run_host(host, commands, watch)


def test_workers_start_their_vms_while_the_network_node_builds(inventory, user, make_slice):
    s = linked(make_slice, user)
    runner = NetnodeWaitsForQemu()
    done = executor.execute(deployment_id=services.deploy_request(slice_obj=s, user=user).pk, runner=runner)
    assert done.status == "succeeded", done.error
    # with a barrier between the stages the network node would have waited 10 s in vain
    assert runner.saw_qemu_first is True
