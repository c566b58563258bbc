"""The rendered host script and the small shell programs, run for real by a local bash (no SSH).

Commands here only touch a temporary directory, or (root only) a throwaway
network namespace the test creates and deletes: never the machine's own network.
"""

import os
import shlex
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from provisioning import plans
from provisioning.plans import HostCommand, destroy_plan, sh, shell
from provisioning.scripts import MarkerParser, ScriptDone, StepBegan, StepEnded, render_script, shell_text

from .factories import spec, vm

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a throwaway network namespace)")


def run(commands, token="t0k3n", prefix=()):
    script = render_script(commands, token=token, step_timeout=20)
    proc = subprocess.run([*prefix, "bash", "-s"], input=script.encode(), capture_output=True, timeout=60)
    parser = MarkerParser(token)
    events = [*parser.feed(proc.stdout), *parser.finish()]
    return proc, [e for e in events if isinstance(e, StepEnded)], parser


def test_quoting_is_shlex_at_the_one_place():
    evil = "x'; touch /tmp/pwned-$(id -u); echo '"
    assert shell_text(("echo", evil)) == "echo " + shlex.quote(evil)
    _proc, ended, _ = run([HostCommand(("echo", evil), "echo")])
    assert ended[0].output == evil
    assert not os.path.exists(f"/tmp/pwned-{os.getuid()}")


def test_steps_report_status_exit_code_output_and_duration_then_stop_at_first_failure(tmp_path):
    marker = tmp_path / "ran"
    commands = [
        HostCommand(("sh", "-c", "echo out; echo err >&2"), "both streams"),
        HostCommand(("true",), "in place", check=("true",)),
        HostCommand(("sleep", "0.2"), "slow"),
        HostCommand(("sh", "-c", "echo broken; exit 7"), "fails"),
        HostCommand(("touch", str(marker)), "never runs"),
    ]
    proc, ended, parser = run(commands)
    assert proc.returncode == 7
    assert [(e.index, e.status, e.exit_code) for e in ended] == [
        (0, "ok", 0),
        (1, "skipped", None),
        (2, "ok", 0),
        (3, "failed", 7),
    ]
    assert ended[0].output == "out\nerr"
    assert ended[3].output == "broken"
    assert 0.15 < ended[2].duration < 5
    assert not parser.done and not marker.exists()


def test_a_command_never_reads_the_script_from_stdin(tmp_path):
    marker = tmp_path / "second"
    _proc, ended, parser = run([HostCommand(("cat",), "reads stdin"), HostCommand(("touch", str(marker)), "next")])
    assert parser.done and marker.exists()
    assert ended[0].output == ""


def test_a_daemon_started_by_a_step_does_not_hold_the_stream(tmp_path):
    pidfile = tmp_path / "d.pid"
    daemon = f"sleep 30 & echo $! > {shlex.quote(str(pidfile))}"
    started = time.monotonic()
    _proc, _ended, parser = run([HostCommand(("sh", "-c", daemon), "background")])
    try:
        assert parser.done and time.monotonic() - started < 10
    finally:
        os.kill(int(pidfile.read_text()), 9)


def test_markers_need_the_token():
    fake = "@@SP other E 0 0 1.0"
    _proc, ended, _parser = run([HostCommand(("echo", fake), "prints a fake marker")], token="real")
    assert [e.output for e in ended] == [fake]


def test_parser_handles_arbitrary_chunking():
    script = render_script(
        [HostCommand(("echo", "héllo"), "a"), HostCommand(("false",), "b")], token="k", step_timeout=5
    )
    out = subprocess.run(["bash", "-s"], input=script.encode(), capture_output=True).stdout
    parser = MarkerParser("k")
    events = []
    for i in range(len(out)):
        events += parser.feed(out[i : i + 1])
    events += parser.finish()
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["StepBegan", "StepEnded", "StepBegan", "StepEnded"]
    assert events[1].output == "héllo" and events[3].status == "failed"
    assert not any(isinstance(e, ScriptDone) for e in events)
    assert isinstance(events[0], StepBegan)


# --- the small shell programs ---------------------------------------------------------------------


def sh_run(argv):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30)


def test_rmdir_if_empty(tmp_path):
    f = tmp_path / "d" / "file"
    f.parent.mkdir()
    f.write_text("x\n")
    assert sh_run(sh(shell.SH_RMDIR_IF_EMPTY, "r", str(f.parent))).returncode == 0
    assert f.parent.exists()  # not empty: kept
    f.unlink()
    assert sh_run(sh(shell.SH_RMDIR_IF_EMPTY, "r", str(f.parent))).returncode == 0
    assert not f.parent.exists()
    assert sh_run(sh(shell.SH_RMDIR_IF_EMPTY, "r", str(f.parent))).returncode == 0  # already gone


def test_pidfile_check_and_kill_only_touch_the_process_that_names_the_pidfile(tmp_path):
    pidfile = tmp_path / "qemu.pid"
    other = tmp_path / "other.pid"
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(pidfile)])
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pidfile.write_text(f"{ours.pid}\n")
        other.write_text(f"{stranger.pid}\n")  # a pid file pointing at a process that is not its own
        assert sh_run(sh(shell.SH_PIDFILE_ALIVE, "a", str(pidfile))).returncode == 0
        assert sh_run(sh(shell.SH_PIDFILE_ALIVE, "a", str(other))).returncode != 0
        assert sh_run(sh(shell.SH_KILL_PIDFILE, "k", str(other))).returncode == 0
        assert stranger.poll() is None and not other.exists()
        started = time.monotonic()
        # `ours` stays a zombie until we reap it below: the kill must not wait out its 10 s grace for it
        assert sh_run(sh(shell.SH_KILL_PIDFILE, "k", str(pidfile))).returncode == 0
        assert time.monotonic() - started < 5 and not pidfile.exists()
        assert ours.wait(timeout=15) is not None
        assert sh_run(sh(shell.SH_PIDFILE_ALIVE, "a", str(pidfile))).returncode != 0
        assert sh_run(sh(shell.SH_KILL_PIDFILE, "k", str(pidfile))).returncode == 0  # already gone
    finally:
        for p in (ours, stranger):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_not_inverts_a_check():
    assert sh_run(plans.not_(("false",))).returncode == 0
    assert sh_run(plans.not_(("true",))).returncode != 0


def test_wait_leases_reports_found_and_missing(tmp_path):
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text("1999999999 52:54:00:00:01:01 10.64.100.10 vm1 01:52:54:00:00:01:01\n")
    argv = sh(
        shell.SH_WAIT_LEASES, "l", "1",
        str(leases), "52:54:00:00:01:01", "10.64.100.10", "wait", "vm1.eth1",
        str(tmp_path / "none"), "52:54:00:aa:bb:cc", "-", "wait", "vm2.eth1",
    )  # fmt: skip
    started = time.monotonic()
    out = sh_run(argv)
    assert out.returncode == 0 and 0.5 < time.monotonic() - started < 10
    assert plans.parse_leases(out.stdout) == {"52:54:00:00:01:01": "10.64.100.10", "52:54:00:aa:bb:cc": None}


def test_wait_leases_fails_naming_the_nic_whose_lease_is_not_its_reservation(tmp_path):
    """Issue 16 #17: dnsmasq that could not read its reservations handed out dynamic addresses unnoticed."""
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text(
        "1999999999 52:54:00:00:01:01 10.64.100.10 vm1 *\n1999999999 52:54:00:00:02:01 10.64.100.202 vm2 *\n"
    )
    argv = sh(
        shell.SH_WAIT_LEASES, "l", "30",
        str(leases), "52:54:00:00:01:01", "10.64.100.201", "wait", "vm1.eth1",
        str(leases), "52:54:00:00:02:01", "10.64.100.202", "wait", "vm2.eth1",
    )  # fmt: skip
    started = time.monotonic()
    out = sh_run(argv)
    assert out.returncode == 1 and time.monotonic() - started < 5  # every NIC has a lease: no waiting
    assert "vm1.eth1 (52:54:00:00:01:01) got 10.64.100.10, not its reservation 10.64.100.201" in out.stdout
    assert "vm2.eth1" not in out.stdout
    assert plans.parse_leases(out.stdout) == {"52:54:00:00:01:01": "10.64.100.10", "52:54:00:00:02:01": "10.64.100.202"}


def test_wait_leases_only_reads_the_nics_of_guests_left_running(tmp_path):
    """A guest a redeploy kept running asks for no lease: read what it has, never wait for it."""
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text("1999999999 52:54:00:00:01:01 10.64.100.10 vm1 *\n")
    argv = sh(
        shell.SH_WAIT_LEASES, "l", "30",
        str(leases), "52:54:00:00:01:01", "10.64.100.10", "read", "vm1.eth1",
        str(leases), "52:54:00:00:02:01", "10.64.100.11", "read", "vm2.eth1",
    )  # fmt: skip
    started = time.monotonic()
    out = sh_run(argv)
    assert out.returncode == 0 and time.monotonic() - started < 5
    assert plans.parse_leases(out.stdout) == {"52:54:00:00:01:01": "10.64.100.10", "52:54:00:00:02:01": None}


def test_console_tail(tmp_path):
    log = tmp_path / "console.log"
    assert sh_run(sh(shell.SH_CONSOLE_TAIL, "c", str(log), "10")).stdout.strip() == "(no console log yet)"
    log.write_text("boot...\nSP: READY\n")
    assert sh_run(sh(shell.SH_CONSOLE_TAIL, "c", str(log), "10")).stdout == "SP: READY\n"


def test_kvm_probe_detects_what_really_runs():
    """On these machines /dev/kvm exists but KVM guests fail: the probe must say tcg (detect, don't assume)."""
    out = sh_run(plans.kvm_probe_command(timeout=10).argv)
    assert out.returncode == 0
    assert out.stdout.startswith("accel=")
    assert plans.parse_kvm_probe(out.stdout) in ("kvm", "tcg")
    if os.environ.get("SP_EXPECT_ACCEL"):  # CI on these machines sets tcg
        assert plans.parse_kvm_probe(out.stdout) == os.environ["SP_EXPECT_ACCEL"]


# --- iptables, forwarding: real, in a throwaway namespace ---------------------------------------------


@pytest.fixture
def netns():
    name = f"sp-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_ns(ns):
    return ("ip", "netns", "exec", ns)


def iptables_state(ns):
    out = subprocess.run([*in_ns(ns), "sh", "-c", "iptables-save; cat /proc/sys/net/ipv4/ip_forward"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    # rules and chains (an empty table that iptables initialised is not a residue), then ip_forward
    return [line for line in out.splitlines() if line.startswith("-")] + out.splitlines()[-1:]


@root_only
def test_isolation_and_nat_rules_apply_once_and_destroy_restores_exactly(netns, tmp_path):
    node = plans.NetnodeSpec("netnode", "ens3", str(tmp_path))
    # isolation chains, then forwarding on, NAT and the VLAN 400 forward rule (the internet phase's tail)
    commands = [*plans.isolation_commands(), *plans.internet_commands(node, 7, ())[-3:]]
    before = iptables_state(netns)
    proc, ended, parser = run(commands, prefix=in_ns(netns))
    assert parser.done, proc.stdout.decode() + proc.stderr.decode()
    assert all(e.status == "ok" for e in ended), [(e.index, e.output) for e in ended]
    applied = iptables_state(netns)
    assert "-A FORWARD -j SP-FORWARD" in applied
    assert "-A SP-FORWARD -i gw_v400 -o ens3 -j ACCEPT" in applied
    assert "-A POSTROUTING -s 10.60.7.0/24 -o ens3 -j MASQUERADE" in applied
    assert applied[-1] == "1"  # forwarding on
    # twice: every step is already in place, nothing is duplicated
    proc, ended, parser = run(commands, prefix=in_ns(netns))
    assert parser.done and {e.status for e in ended} == {"skipped"}
    assert iptables_state(netns) == applied
    # undo in reverse: exactly the state before, including ip_forward
    undo = [c.undo_command() for c in reversed(commands) if c.undo]
    proc, ended, parser = run(undo, prefix=in_ns(netns))
    assert parser.done and all(e.status == "ok" for e in ended), [(e.index, e.output) for e in ended]
    assert iptables_state(netns) == before
    # and once more from the clean state: "already gone" is fine
    proc, ended, parser = run(undo, prefix=in_ns(netns))
    assert parser.done


@root_only
def test_destroy_of_network_node_is_tolerant_of_a_clean_host(netns, tmp_path):
    """The whole network-node teardown runs on a host where none of it exists (OVS absent is the only error)."""
    node = plans.NetnodeSpec("netnode", "ens3", str(tmp_path))
    s = spec([vm(1, vlans=(400,))], internet=True)
    s = plans.SliceSpec(s.slice_id, s.slice_name, node, s.workers, s.vms, (), internet=True)
    teardown = [c for p in destroy_plan(s).by_host()["netnode"] for c in p.commands if c.argv[0] != "ovs-vsctl"]
    # /run/netns is machine-wide: never delete the real ns-dhcp-vlan400 (a lab deployed meanwhile has it)
    private = f"sp-t-{uuid.uuid4().hex[:8]}"
    teardown = [renamed(c, "ns-dhcp-vlan400", private) for c in teardown]
    assert any(private in c.argv for c in teardown)
    _proc, ended, parser = run(teardown, prefix=in_ns(netns))
    assert parser.done, [(e.index, e.output) for e in ended]
    assert {e.status for e in ended} == {"ok"}


NETNS_DIR = Path("/var/run/netns")  # where iproute2 keeps the names (/run/netns)


def renamed(cmd: HostCommand, old: str, new: str) -> HostCommand:
    """``cmd`` with every argument equal to ``old`` (a namespace name) replaced by ``new``."""

    def swap(argv):
        return tuple(new if a == old else a for a in argv) if argv else argv

    return replace(cmd, argv=swap(cmd.argv), check=swap(cmd.check), undo=swap(cmd.undo))


def usable(ns: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", ns, "true"], capture_output=True).returncode == 0


@root_only
def test_a_stale_namespace_name_is_replaced_by_create_and_removed_by_delete():
    """Issue 16 #10: a name left in /run/netns with no namespace behind it (its mount was lost, e.g. made
    from an sshd session in another mount namespace) made `ip netns add` fail with "File exists" forever,
    and the delete skipped it because `ip netns exec NS true` failed. Both now go by the name."""
    name = f"sp-stale-{uuid.uuid4().hex[:8]}"
    create = renamed(plans.netns_command(132), "ns-dhcp-vlan132", name)
    delete = create.undo_command()
    stale = NETNS_DIR / name
    try:
        NETNS_DIR.mkdir(exist_ok=True)
        stale.touch()  # exactly what a lost mount leaves: the name, no namespace
        assert not usable(name)
        proc, ended, parser = run([create])
        assert parser.done, proc.stdout.decode() + proc.stderr.decode()
        assert ended[0].status == "ok", ended[0].output
        assert usable(name)
        proc, ended, parser = run([create])  # in place now: skipped by its check
        assert parser.done and ended[0].status == "skipped"

        subprocess.run(["ip", "netns", "del", name], check=True)
        stale.touch()
        proc, ended, parser = run([delete])
        assert parser.done and ended[0].status == "ok", ended[0].output
        assert not stale.exists()
        proc, ended, parser = run([delete, create, delete])  # "already gone" is fine; a name deletes
        assert parser.done and [e.status for e in ended] == ["ok", "ok", "ok"], [e.output for e in ended]
        assert not stale.exists()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        stale.unlink(missing_ok=True)


@pytest.fixture
def three_namespaces():
    """A stand-in network node with two gateway ports (veths) and one guest behind each; removed afterwards."""
    tag = uuid.uuid4().hex[:6]
    names = {"node": f"sp-n-{tag}", "a": f"sp-a-{tag}", "b": f"sp-b-{tag}"}
    try:
        for ns in names.values():
            subprocess.run(["ip", "netns", "add", ns], check=True)
        for vlan, guest in ((101, "a"), (102, "b")):
            subprocess.run(
                ["ip", "link", "add", f"gw_v{vlan}", "netns", names["node"], "type", "veth", "peer", "name", "g0",
                 "netns", names[guest]],
                check=True,
            )  # fmt: skip
            script = (
                f"ip -n {names['node']} addr add 10.64.{vlan}.1/24 dev gw_v{vlan}; "
                f"ip -n {names['node']} link set gw_v{vlan} up; "
                f"ip -n {names[guest]} addr add 10.64.{vlan}.10/24 dev g0; ip -n {names[guest]} link set g0 up; "
                f"ip -n {names[guest]} route add default via 10.64.{vlan}.1"
            )
            subprocess.run(["sh", "-c", script], check=True)
        subprocess.run([*in_ns(names["node"]), "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
        subprocess.run(["ip", "-n", names["node"], "link", "set", "lo", "up"], check=True)
        yield names
    finally:
        for ns in names.values():
            subprocess.run(["ip", "netns", "del", ns], check=False)


def ping(ns, address) -> bool:
    return subprocess.run([*in_ns(ns), "ping", "-c", "1", "-W", "1", address], capture_output=True).returncode == 0


@root_only
def test_isolation_rules_stop_routing_between_vlans_but_not_a_ping_to_the_own_gateway(three_namespaces):
    ns = three_namespaces
    assert ping(ns["a"], "10.64.102.10")  # the leak the rules close: routed through the gateways
    assert ping(ns["a"], "10.64.102.1")
    _proc, ended, parser = run(list(plans.isolation_commands()), prefix=in_ns(ns["node"]))
    assert parser.done and {e.status for e in ended} == {"ok"}
    assert ping(ns["a"], "10.64.101.1")  # its own gateway
    assert not ping(ns["a"], "10.64.102.10")  # a guest of another VLAN
    assert not ping(ns["a"], "10.64.102.1")  # another VLAN's gateway address
    assert not ping(ns["b"], "10.64.101.10")


TAP_PROBE = r"""
import fcntl, os, struct, sys
TUNSETIFF, IFF_TAP, IFF_NO_PI = 0x400454CA, 0x0002, 0x1000
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", sys.argv[1].encode(), IFF_TAP | IFF_NO_PI))
src = bytes.fromhex("525400000001")  # an ARP request for the host's own address, as a guest would send
arp = b"\xff" * 6 + src + b"\x08\x06" + bytes.fromhex("0001080006040001") + src + bytes([10, 9, 9, 5])
arp += b"\x00" * 6 + bytes([10, 9, 9, 1])
try:
    os.write(fd, arp)
except OSError as exc:
    print("refused", exc.errno)
else:
    print("accepted")
"""


@root_only
@pytest.mark.parametrize("vlan,expected", [(None, "refused 5"), (100, "accepted")])
def test_a_dead_interface_tap_refuses_the_guests_frames(netns, vlan, expected):
    """Why a NIC without a VLAN gets a TAP that is down: the guest's frames go nowhere (EIO).

    (Up but unattached, the same ARP reaches the worker's own IP stack; see docs/provisioning.md.)
    """
    from provisioning.plans import NicSpec

    nic = NicSpec(1, "52:54:00:00:00:01", vlan, "tap_1_eth1")
    _proc, ended, parser = run(list(plans.tap_commands(vm(1), nic)), prefix=in_ns(netns))
    # a new TAP is down: "set down" is skipped by its check, "set up" runs
    assert parser.done and [e.status for e in ended] == ["ok", "skipped" if vlan is None else "ok"]
    subprocess.run([*in_ns(netns), "ip", "addr", "add", "10.9.9.1/24", "dev", "lo"], check=True)
    subprocess.run([*in_ns(netns), "ip", "link", "set", "lo", "up"], check=True)
    out = subprocess.run([*in_ns(netns), sys.executable, "-c", TAP_PROBE, nic.tap], capture_output=True, text=True)
    assert out.stdout.strip() == expected, out.stderr


FAKE_DNSMASQ = """
import os, sys, time
if os.fork():
    sys.exit(0)  # like dnsmasq: the parent returns, the daemon stays
os.setsid()
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)  # like dnsmasq: the step's output stream is not held open
pidfile = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--pid-file="))
with open(pidfile, "w") as f:
    f.write(f"{os.getpid()}\\n")
time.sleep(120)
"""


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_vlan_400_dnsmasq_serves_the_union_of_the_slices_files_and_restarts_only_on_change(tmp_path):
    """SH_DNSMASQ_SYNC with a stand-in dnsmasq (daemonises, writes its pid file): the reservations of
    every slice's file become --dhcp-host arguments; stale leases go; leave never starts it."""
    hosts, pidfile, leases = tmp_path / "hosts", tmp_path / "dnsmasq.pid", tmp_path / "dnsmasq.leases"
    hosts.mkdir()
    (hosts / "slice7").write_text("52:54:00:00:07:00,10.60.7.10\n")
    (hosts / "slice8").write_text("52:54:00:00:08:00,10.60.7.11\n52:54:00:00:08:01,10.60.7.12\n")
    leases.write_text(
        "1999999999 52:54:00:00:07:00 10.60.7.10 a *\n"  # its reservation: kept
        "1999999999 52:54:00:00:09:00 10.60.7.11 b *\n"  # another MAC on a reserved address: dropped
        "1999999999 52:54:00:00:08:01 10.60.7.99 c *\n"  # not its reservation: dropped
    )
    fake = tmp_path / "fake-dnsmasq.py"
    fake.write_text(FAKE_DNSMASQ)

    def sync(mode):
        argv = (sys.executable, str(fake), f"--pid-file={pidfile}", "--port=0")
        return sh_run(sh(shell.SH_DNSMASQ_SYNC, "s", mode, str(pidfile), str(hosts), str(leases), *argv))

    pids = []
    try:
        assert sync("check").returncode != 0
        assert sync("leave").returncode == 0 and not pidfile.exists()  # not running: leave starts nothing
        assert sync("run").returncode == 0
        time.sleep(0.5)
        pids.append(int(pidfile.read_text()))
        args = _cmdline(pids[0])
        assert sorted(a for a in args if a.startswith("--dhcp-host=")) == [
            "--dhcp-host=52:54:00:00:07:00,10.60.7.10",
            "--dhcp-host=52:54:00:00:08:00,10.60.7.11",
            "--dhcp-host=52:54:00:00:08:01,10.60.7.12",
        ]
        assert leases.read_text() == "1999999999 52:54:00:00:07:00 10.60.7.10 a *\n"
        # the same reservations: in place, not restarted
        assert sync("check").returncode == 0
        assert sync("run").returncode == 0 and int(pidfile.read_text()) == pids[0]
        # slice 8 leaves: restarted without its reservations, slice 7's lease survives
        (hosts / "slice8").unlink()
        assert sync("check").returncode != 0
        assert sync("leave").returncode == 0
        time.sleep(0.5)
        pids.append(int(pidfile.read_text()))
        assert pids[1] != pids[0] and not Path(f"/proc/{pids[0]}/cmdline").read_bytes()
        assert [a for a in _cmdline(pids[1]) if a.startswith("--dhcp-host=")] == [
            "--dhcp-host=52:54:00:00:07:00,10.60.7.10"
        ]
        assert "52:54:00:00:07:00" in leases.read_text()
    finally:
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def test_reservation_file_is_written_whole_and_world_readable_under_umask_077(tmp_path):
    path = tmp_path / "slice7"
    lines = ("52:54:00:00:07:00,10.60.7.10", "52:54:00:00:07:01,10.60.7.11")
    same = sh(shell.SH_SAME_LINES, "s", str(path), *lines)
    assert sh_run(same).returncode != 0
    proc = subprocess.run(["sh", "-c", 'umask 077; exec "$@"', "u", *sh(shell.SH_WRITE_LINES, "w", str(path), *lines)])
    assert proc.returncode == 0
    assert path.read_text() == "".join(f"{line}\n" for line in lines)
    assert path.stat().st_mode & 0o777 == 0o644 and not Path(f"{path}.tmp").exists()
    assert sh_run(same).returncode == 0
    assert sh_run(sh(shell.SH_SAME_LINES, "s", str(path), *lines[:1])).returncode != 0
