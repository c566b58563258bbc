"""The host doctor (issue 12): its one read-only command, the parser on recorded outputs, each finding's
fix, and the doctor over a real SSH session (the local sshd), from the command line and the admin.

Recorded outputs (doctor_outputs/): ``lab-worker1.txt``, ``lab-worker2.txt``, ``lab-netnode.txt`` from the lab's hosts
(the doctor's script over SSH), ``ovs-stopped.txt`` from a machine whose OVS is not running.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from inventory.models import Host
from provisioning.doctor import run_doctor
from provisioning.plans.doctor import (
    FAIL,
    OK,
    SH_DOCTOR,
    WARN,
    diagnose,
    doctor_command,
    parse_facts,
    worst,
)

from .conftest import needs_sshd

RECORDED = Path(__file__).parent / "doctor_outputs"
WORKER_DIR, NETNODE_DIR = (
    "/tmp/slice-portal-lab-tests/hosts/worker1/state",
    "/tmp/slice-portal-lab-tests/hosts/netnode/state",
)


def recorded(name: str, *, drop: str = "", replace: tuple[str, str] | None = None, add: str = "") -> str:
    """A recorded output, optionally with the lines matching ``drop`` removed, a line replaced, or one added."""
    lines = (RECORDED / name).read_text().splitlines()
    if drop:
        lines = [line for line in lines if not re.match(drop, line)]
    if replace:
        lines = [replace[1] if re.match(replace[0], line) else line for line in lines]
    if add:
        lines.insert(-1, add)  # before "end"
    return "\n".join(lines) + "\n"


def worker(output: str, *, accel: str = "tcg") -> dict:
    findings = diagnose(parse_facts(output), role="worker", state_dir=WORKER_DIR, accel=accel)
    return {f.check: f for f in findings}


def netnode(output: str, *, uplink: str = "ens3") -> dict:
    findings = diagnose(parse_facts(output), role="network", state_dir=NETNODE_DIR, uplink=uplink)
    return {f.check: f for f in findings}


# --- the command ----------------------------------------------------------------------------------


def test_the_doctor_is_one_command_with_the_hosts_values_as_arguments():
    cmd = doctor_command(role="network", state_dir="/var/lib/sp", uplink="ens3")
    assert cmd.argv == ("sh", "-c", SH_DOCTOR, "sp-doctor", "network", "/var/lib/sp", "ens3")
    assert cmd.check is None and cmd.undo is None
    assert doctor_command(role="worker", state_dir="/srv/sp", uplink="ens3").argv[-3:] == ("worker", "/srv/sp", "")


def test_the_doctors_program_changes_nothing_on_the_host():
    """Only reading verbs: OVS is asked (show, br-exists, get, find, list-ports), iptables lists (-S)."""
    verbs = set(re.findall(r"ovs-vsctl (?:--[a-z-]+(?:=\S+)? )*([a-z][a-z-]*)", SH_DOCTOR))
    assert verbs - {"ovs-ofctl"} == {"show", "br-exists", "get", "find", "list-ports"}
    assert "iptables -w 5 -t nat -S" in SH_DOCTOR
    assert not re.search(r"iptables [^;|]*\s-[ADIFXPNRZ]\b", SH_DOCTOR)
    for mutating in ("add-", "del-", " set ", "sysctl -w", "rm ", "mkdir", "kill", "ip link set", "modprobe", "tee"):
        assert mutating not in SH_DOCTOR, mutating
    unquoted = re.sub(r"'[^']*'", "", SH_DOCTOR)  # sed/awk/grep programs are single-quoted
    assert set(re.findall(r">\s*([^\s;)|]+)", unquoted)) == {"/dev/null", "&1"}, "writes a file"


def test_the_program_runs_under_a_posix_shell_and_reads_back_complete():
    cmd = doctor_command(role="network", state_dir="/nonexistent/sp", uplink="lo")
    result = subprocess.run(
        ["dash", *cmd.argv[1:]] if Path("/bin/dash").exists() else list(cmd.argv),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    facts = parse_facts(result.stdout)
    assert facts.complete and facts.uid is not None and facts.commands["bash"]
    assert facts.state_dir_nearest == "/" and not facts.state_dir_exists and facts.avail_kib
    assert "lo" in facts.links


# --- the parser on recorded outputs ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["lab-worker1.txt", "lab-worker2.txt"])
def test_a_lab_worker_is_ready(name):
    findings = worker(recorded(name))
    assert {c: f.status for c, f in findings.items() if f.status != OK} == {}
    assert list(findings) == [
        "root",
        "tools",
        "ip",
        "openvswitch",
        "br-int",
        "trunk",
        "qemu-system-x86_64",
        "accel",
        "/dev/net/tun",
        "qemu-img",
        "socat",
        "flock",
        "disk",
    ]
    assert findings["trunk"].summary == "underlay trunk lab-trunk (untagged on br-int)"
    assert findings["br-int"].summary == "bridge br-int (datapath netdev)"
    assert findings["openvswitch"].summary.startswith("ovs-vsctl (Open vSwitch)")
    facts = parse_facts(recorded(name))
    assert set(facts.versions) >= {"ovs", "qemu", "dnsmasq"}


def test_a_lab_network_node_is_ready():
    findings = netnode(recorded("lab-netnode.txt"))
    assert {c: f.status for c, f in findings.items() if f.status != OK} == {}
    assert ["dnsmasq", "iptables", "ip_forward", "uplink"] == [
        c for c in findings if c in ("dnsmasq", "iptables", "ip_forward", "uplink")
    ]
    assert findings["uplink"].summary == "uplink ens3 up, 203.0.113.2/24, default via 203.0.113.1 dev ens3"
    assert "qemu-system-x86_64" not in findings and "socat" not in findings


def test_stopped_ovs_is_a_failure_with_its_fix_and_stops_the_bridge_checks():
    findings = worker(recorded("ovs-stopped.txt"))
    assert findings["openvswitch"].status == FAIL
    assert "database connection failed" in findings["openvswitch"].summary
    assert findings["openvswitch"].fix == "systemctl enable --now openvswitch-switch"
    assert findings["br-int"].status == findings["trunk"].status == FAIL
    assert "not checked" in findings["trunk"].summary


@pytest.mark.parametrize(
    ("command", "check", "status", "fix"),
    [
        ("socat", "socat", FAIL, "apt-get install -y socat"),
        ("flock", "flock", FAIL, "apt-get install -y util-linux"),
        ("qemu-system-x86_64", "qemu-system-x86_64", FAIL, "apt-get install -y qemu-system-x86"),
        ("qemu-img", "qemu-img", WARN, "apt-get install -y qemu-utils"),
        ("ovs-vsctl", "openvswitch", FAIL, "apt-get install -y openvswitch-switch"),
        ("ip", "ip", FAIL, "apt-get install -y iproute2"),
        ("cmp", "tools", FAIL, "apt-get install -y diffutils"),
    ],
)
def test_a_missing_program_is_named_with_its_package(command, check, status, fix):
    findings = worker(recorded("lab-worker1.txt", replace=(rf"cmd {re.escape(command)} ", f"cmd {command} -")))
    assert findings[check].status == status and findings[check].fix == fix
    assert command in findings[check].summary


def test_a_missing_br_int_names_the_command_that_makes_it():
    output = recorded("lab-worker1.txt", drop=r"untagged ", replace=(r"br-int yes", "br-int no"))
    findings = worker(output)
    assert findings["br-int"].status == FAIL and findings["br-int"].fix == "ovs-vsctl --may-exist add-br br-int"
    assert findings["trunk"].status == FAIL and "lab-trunk" in findings["trunk"].fix  # the NICs it could add


@pytest.mark.parametrize(
    ("untagged", "status", "fix"),
    [
        (None, FAIL, "ovs-vsctl --may-exist add-port br-int UNDERLAY_NIC"),
        ("untagged tap_12_eth1,,up,", FAIL, "ovs-vsctl --may-exist add-port br-int UNDERLAY_NIC"),  # the portal's own
        ("untagged lab-trunk,,down,", FAIL, "ip link set lab-trunk up"),
        ("untagged lab-trunk,,up,100 200", WARN, "ovs-vsctl clear port lab-trunk trunks"),
        ("untagged patch-under,patch,,", OK, ""),
    ],
)
def test_the_underlay_trunk_is_br_ints_untagged_port(untagged, status, fix):
    output = recorded("lab-worker1.txt", drop=r"untagged ", add=untagged or "")
    finding = worker(output)["trunk"]
    assert finding.status == status and finding.fix.startswith(fix)


@pytest.mark.parametrize(
    ("accel", "kvm", "status"),
    [("tcg", "none", OK), ("auto", "rw", OK), ("kvm", "rw", OK), ("auto", "none", WARN), ("kvm", "none", FAIL)],
)
def test_kvm_or_the_tcg_fallback(accel, kvm, status):
    finding = worker(recorded("lab-worker1.txt", replace=(r"kvm ", f"kvm {kvm}")), accel=accel)["accel"]
    assert finding.status == status
    if status != OK:
        assert "modprobe kvm_intel" in finding.fix and "no /dev/kvm" in finding.summary


@pytest.mark.parametrize(
    ("change", "status", "fix"),
    [
        ({"uplink": "eth9"}, FAIL, "set the Host's uplink to the interface facing the internet"),
        ({"replace": (r"link ens3 ", "link ens3 BROADCAST,MULTICAST DOWN")}, FAIL, "ip link set ens3 up"),
        ({"replace": (r"link ens3 ", "link ens3 BROADCAST,MULTICAST,UP DOWN")}, FAIL, "check ens3's cable"),
        ({"drop": r"addr ens3 "}, WARN, "ip addr add ADDRESS/PREFIX dev ens3"),
        ({"drop": r"route "}, WARN, "ip route replace default via GATEWAY dev ens3"),
    ],
)
def test_the_uplink_exists_is_up_addressed_and_the_default_route(change, status, fix):
    uplink = change.pop("uplink", "ens3")
    finding = netnode(recorded("lab-netnode.txt", **change), uplink=uplink)["uplink"]
    assert finding.status == status and finding.fix.startswith(fix)
    if uplink == "eth9":
        assert "ens3" in finding.fix and "lab-mgmt" in finding.fix  # the interfaces to choose from


def test_network_node_packages_forwarding_and_nat():
    findings = netnode(recorded("lab-netnode.txt", replace=(r"cmd dnsmasq ", "cmd dnsmasq -")))
    assert findings["dnsmasq"].status == FAIL and findings["dnsmasq"].fix == "apt-get install -y dnsmasq-base"
    findings = netnode(recorded("lab-netnode.txt", replace=(r"ip_forward ", "ip_forward 0 ro")))
    assert findings["ip_forward"].status == FAIL and "read-only" in findings["ip_forward"].summary
    findings = netnode(recorded("lab-netnode.txt", replace=(r"ip_forward ", "ip_forward 1 rw")))
    assert findings["ip_forward"].status == OK
    findings = netnode(recorded("lab-netnode.txt", replace=(r"iptables-nat ", "iptables-nat fail can't initialize")))
    assert findings["iptables"].status == FAIL and findings["iptables"].fix.startswith("modprobe iptable_nat")
    findings = netnode(recorded("lab-netnode.txt", replace=(r"cmd iptables ", "cmd iptables -")))
    assert findings["iptables"].fix == "apt-get install -y iptables"


@pytest.mark.parametrize(("avail_mib", "status"), [(8192, OK), (2048, WARN), (512, FAIL)])
def test_free_disk_in_the_state_dir(avail_mib, status):
    finding = worker(recorded("lab-worker1.txt", replace=(r"avail ", f"avail {avail_mib * 1024}")))["disk"]
    assert finding.status == status and f"{avail_mib / 1024:.1f} GiB free" in finding.summary


def test_a_state_dir_that_is_missing_or_read_only():
    output = recorded("lab-worker1.txt", replace=(r"state_dir ", "state_dir missing rw /srv"))
    assert (
        "(/tmp/slice-portal-lab-tests/hosts/worker1/state is created at the first deploy)"
        in worker(output)["disk"].summary
    )
    output = recorded("lab-worker1.txt", replace=(r"state_dir ", "state_dir exists ro /tmp/x"))
    assert worker(output)["disk"].status == FAIL


def test_not_root_and_cut_output_fail():
    findings = worker(recorded("lab-worker1.txt", replace=(r"uid ", "uid 1000")))
    assert findings["root"].status == FAIL and "root" in findings["root"].fix
    findings = worker(recorded("lab-worker1.txt", drop=r"(end|avail|state_dir)"))
    assert findings["doctor"].status == FAIL and worst(list(findings.values())) == FAIL


# --- over SSH: the local sshd stands for a host ---------------------------------------------------


@needs_sshd
@pytest.mark.django_db
def test_the_doctor_over_ssh_is_one_round_trip(ssh_hosts):
    report = run_doctor(host=ssh_hosts["workers"][0])
    assert report.round_trips == 1
    checks = {f.check: f for f in report.findings}
    assert checks["ssh"].status == OK and "doctor" not in checks  # the output came back whole
    assert checks["root"].status == OK and checks["tools"].status == OK
    assert report.to_dict()["findings"][0]["check"] == "ssh"


@needs_sshd
@pytest.mark.django_db
def test_an_unreachable_host_is_one_ssh_finding_with_its_fix(ssh_hosts, settings, tmp_path):
    host = ssh_hosts["workers"][0]
    Host.objects.filter(pk=host.pk).update(ssh_port=1)
    report = run_doctor(host=Host.objects.get(pk=host.pk))
    assert [(f.check, f.status) for f in report.findings] == [("ssh", FAIL)]
    assert "check management_address and ssh_port" in report.findings[0].fix
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    settings.PROVISIONING_KNOWN_HOSTS = str(empty)
    report = run_doctor(host=ssh_hosts["netnode"])
    assert "unknown host key" in report.findings[0].summary
    assert f"ssh-keyscan -p {ssh_hosts['netnode'].ssh_port} 127.0.0.1" in report.findings[0].fix


@needs_sshd
@pytest.mark.django_db
def test_the_command_prints_each_finding_with_its_fix_and_fails_when_one_fails(ssh_hosts, capsys):
    # The machine's own OVS is not running in the tests' namespace: a failure with its fix (or ready as is).
    try:
        call_command("hosts", "doctor", "netnode")
        failed = False
    except CommandError as exc:
        assert "netnode: not ready" in str(exc)
        failed = True
    out = capsys.readouterr().out
    assert out.startswith("netnode (network, 127.0.0.1:")
    assert re.search(r"^  ok    ssh +root@127\.0\.0\.1:\d+, host key checked$", out, re.MULTILINE), out
    assert failed == ("FAIL" in out) and ("fix: " in out) == ("FAIL" in out or "WARN" in out)
    with pytest.raises(CommandError, match="no such host: nope"):
        call_command("hosts", "doctor", "nope")
    try:
        call_command("hosts", "doctor", "worker1", "--json")
    except CommandError:
        pass
    data = json.loads(capsys.readouterr().out)
    assert data[0]["host"] == "worker1" and data[0]["round_trips"] == 1 and data[0]["findings"][0]["check"] == "ssh"


@needs_sshd
@pytest.mark.django_db(transaction=True)
def test_the_admin_runs_the_doctor_as_a_job_and_shows_its_findings(ssh_hosts, rq_queue):
    from rq import SimpleWorker

    admin = get_user_model().objects.create_user("ops", password="pw", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    host = ssh_hosts["workers"][0]
    page = client.get(f"/admin/inventory/host/{host.pk}/change/")
    assert f'href="/admin/inventory/host/{host.pk}/doctor/"' in page.content.decode()
    assert "Run the doctor" in client.get(f"/admin/inventory/host/{host.pk}/doctor/").content.decode()

    r = client.post(f"/admin/inventory/host/{host.pk}/doctor/")
    assert r.status_code == 302 and "?job=" in r.url
    waiting = client.get(r.url).content.decode()
    assert "The doctor is queued" in waiting and 'http-equiv="refresh"' in waiting
    SimpleWorker([rq_queue], connection=rq_queue.connection).work(burst=True)
    done = client.get(r.url).content.decode()
    assert 'id="doctor-findings"' in done and 'http-equiv="refresh"' not in done
    assert re.search(r"<td>ssh</td><td>root@127\.0\.0\.1:\d+, host key checked</td>", done)
    assert "round trip)" in done

    # Another host's run is not shown on this host's page; the list action queues one per host.
    other = client.get(f"/admin/inventory/host/{ssh_hosts['netnode'].pk}/doctor/?job={r.url.split('=')[1]}")
    assert "not a doctor run of this host" in other.content.decode()
    r = client.post(
        "/admin/inventory/host/",
        {"action": "run_doctor", "_selected_action": [h.pk for h in ssh_hosts["workers"]]},
        follow=True,
    )
    assert r.content.decode().count("doctor queued") == 2 and rq_queue.count == 2
