"""Deploying twice changes nothing: every command a deploy, an unchanged apply or a start runs has a
read-only check, so a redeploy of a slice that is in place skips every step (issue 10).

The new checks (a directory, a link's state, an address) are run here against this machine
(``lo`` and a temporary directory: no root needed).
"""

import subprocess

import pytest

from provisioning.plans import apply_plan, deploy_plan, shell
from provisioning.plans import power as pw

from .factories import DISK, spec, vlan, vm


def rich_spec(link_guard=True):
    """Everything a plan can hold: VLAN 400, two links, a dead NIC, a disk image, two workers, link guards."""
    vms = [
        vm(1, "worker1", vlans=(400, 100, None)),
        vm(2, "worker2", vlans=(400, 100)),
        vm(3, "worker2", vlans=(None, 101), image=DISK),
        vm(4, "worker1", vlans=(None, 101)),
    ]
    return spec(vms, [vlan(100, 1, 2), vlan(101, 3, 4)], internet=True, link_guard=link_guard)


def unchecked(plan):
    return [(p.host, p.name, c.description) for s in plan.stages for p in s.phases for c in p.commands if not c.check]


@pytest.mark.parametrize("link_guard", [True, False])
def test_every_deploy_command_has_a_check(link_guard):
    plan = deploy_plan(rich_spec(link_guard=link_guard))
    assert plan.step_count() > 40
    assert unchecked(plan) == []


def test_an_unchanged_apply_is_the_deploy_plan_and_every_step_has_a_check():
    s = rich_spec()
    plan = apply_plan(s, s)
    assert plan.to_dict()["stages"] == deploy_plan(s).to_dict()["stages"]  # no teardown, no relink
    assert unchecked(plan) == []


def test_start_has_a_check_for_every_command():
    plan = pw.power_plan(rich_spec(), pw.START, [1, 3])
    assert [c for s in plan.stages for p in s.phases if p.name == pw.START for c in p.commands]
    assert [u for u in unchecked(plan) if u[1] != pw.PHASE_STATUS] == []  # the probe only reads


def test_checks_that_used_to_be_missing():
    s = rich_spec()
    by_argv = {c.argv: c for st in deploy_plan(s).stages for p in st.phases for c in p.commands}
    assert by_argv[("mkdir", "-p", "/var/lib/sp/vms")].check == shell.is_dir("/var/lib/sp/vms")
    assert by_argv[("ip", "link", "set", "dev", "tap_1_eth2", "down")].check == shell.link_state("tap_1_eth2", "down")
    assert by_argv[("ip", "addr", "replace", "10.64.100.1/24", "dev", "gw_v100")].check == shell.has_address(
        "gw_v100", "10.64.100.1/24"
    )
    in_ns = ("ip", "netns", "exec", "ns-dhcp-vlan100")
    dhcp_up = by_argv[(*in_ns, "ip", "link", "set", "dev", "dhcp_v100", "up")]
    assert dhcp_up.check == (*in_ns, *shell.link_state("dhcp_v100", "up"))


def run(argv) -> int:
    return subprocess.run(argv, capture_output=True, timeout=10).returncode


def test_directory_check(tmp_path):
    assert run(shell.is_dir(str(tmp_path))) == 0
    assert run(shell.is_dir(str(tmp_path / "missing"))) == 1
    (tmp_path / "file").write_text("")
    assert run(shell.is_dir(str(tmp_path / "file"))) == 1


def test_link_state_check_reads_the_up_flag_not_lower_up():
    assert run(shell.link_state("lo", "up")) == 0
    assert run(shell.link_state("lo", "down")) == 1
    assert run(shell.link_state("no-such-link0", "up")) == 1
    assert run(shell.link_state("no-such-link0", "down")) == 1  # a missing link is in no state: the command runs


def test_address_check_wants_address_and_prefix_exactly():
    assert run(shell.has_address("lo", "127.0.0.1/8")) == 0
    assert run(shell.has_address("lo", "127.0.0.1/24")) == 1  # another prefix: replaced
    assert run(shell.has_address("lo", "127.0.0.10/8")) == 1  # another address
    assert run(shell.has_address("no-such-link0", "127.0.0.1/8")) == 1
