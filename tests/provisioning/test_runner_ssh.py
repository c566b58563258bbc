"""FabricRunner over real SSH against the sshd the test session starts on 127.0.0.1.

The commands only touch a temporary directory.
"""

import time

import pytest

from provisioning.plans import HostCommand
from provisioning.runners import DryRunRunner, FabricRunner, SshTarget

from .conftest import free_port, needs_sshd

pytestmark = needs_sshd


def targets(sshd, *names, port=None):
    return {n: SshTarget(n, "127.0.0.1", port or sshd.port, "root", str(sshd.client_key)) for n in names}


def runner_for(sshd, *names, known_hosts=None, port=None, **kw):
    return FabricRunner(
        targets(sshd, *names, port=port),
        known_hosts=str(known_hosts or sshd.known_hosts),
        connect_timeout=kw.pop("connect_timeout", 5),
        command_timeout=kw.pop("command_timeout", 30),
    )


def collect(runner, scripts):
    return list(runner.run_stage(scripts))


def test_stage_runs_each_host_in_one_round_trip_in_parallel_with_live_events(sshd, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    scripts = {
        "worker1": [
            HostCommand(("mkdir", "-p", str(a)), "make a"),
            HostCommand(("sleep", "1.5"), "slow"),
            HostCommand(("touch", str(a / "done")), "touch", check=("test", "-e", str(a / "done"))),
        ],
        "worker2": [HostCommand(("mkdir", "-p", str(b)), "make b"), HostCommand(("sleep", "1.5"), "slow")],
    }
    with runner_for(sshd, "worker1", "worker2") as runner:
        started = time.monotonic()
        events = []
        for event in runner.run_stage(scripts):
            events.append((time.monotonic() - started, event))
        elapsed = time.monotonic() - started
        # parallel: two 1.5 s sleeps on two hosts take ~1.5 s, not 3
        assert elapsed < 2.9
        # live: the first step's end is known long before the host finishes
        first_end = next(t for t, e in events if e.kind == "ended" and e.host == "worker1" and e.index == 0)
        host_end = next(t for t, e in events if e.kind == "host" and e.host == "worker1")
        assert host_end - first_end > 1.0
        ended = [(e.host, e.index, e.status, e.exit_code) for _, e in events if e.kind == "ended"]
        assert sorted(ended) == [
            ("worker1", 0, "ok", 0),
            ("worker1", 1, "ok", 0),
            ("worker1", 2, "ok", 0),
            ("worker2", 0, "ok", 0),
            ("worker2", 1, "ok", 0),
        ]
        slow = next(e for _, e in events if e.kind == "ended" and e.index == 1)
        assert 1.4 < slow.duration < 3
        assert (a / "done").exists() and b.exists()
        # a second stage on the same connections: now the touch is skipped by its check
        events = collect(runner, {"worker1": [scripts["worker1"][2]]})
        assert [e.status for e in events if e.kind == "ended"] == ["skipped"]
        assert runner.stats["worker1"].connections == 1
        assert runner.stats["worker1"].round_trips == 2
        assert runner.stats["worker2"].round_trips == 1
        assert runner.stats["worker1"].executed == 3 and runner.stats["worker1"].commands == 4


def test_first_failing_step_stops_that_host_only(sshd, tmp_path):
    never = tmp_path / "never"
    scripts = {
        "worker1": [
            HostCommand(("sh", "-c", "echo 'ip: RTNETLINK answers: File exists' >&2; exit 2"), "Create TAP"),
            HostCommand(("touch", str(never)), "must not run"),
        ],
        "worker2": [HostCommand(("true",), "fine"), HostCommand(("true",), "fine too")],
    }
    with runner_for(sshd, "worker1", "worker2") as runner:
        events = collect(runner, scripts)
    ended = {(e.host, e.index): e for e in events if e.kind == "ended"}
    assert ended["worker1", 0].status == "failed" and ended["worker1", 0].exit_code == 2
    assert "RTNETLINK answers: File exists" in ended["worker1", 0].output
    assert ("worker1", 1) not in ended and not never.exists()
    assert ended["worker2", 1].status == "ok"
    hosts = {e.host: e for e in events if e.kind == "host"}
    assert not hosts["worker1"].ok and hosts["worker2"].ok


def test_unknown_host_key_is_rejected(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with runner_for(sshd, "worker1", known_hosts=empty) as runner:
        events = collect(runner, {"worker1": [HostCommand(("true",), "x")]})
    (host,) = [e for e in events if e.kind == "host"]
    assert not host.ok
    assert "worker1" in host.error and "unknown host key" in host.error
    assert not [e for e in events if e.kind == "ended"]


def test_changed_host_key_is_rejected(sshd, tmp_path):
    other = tmp_path / "k"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key_type, key = (tmp_path / "k.pub").read_text().split()[:2]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key}\n")
    with runner_for(sshd, "worker1", known_hosts=wrong) as runner:
        events = collect(runner, {"worker1": [HostCommand(("true",), "x")]})
    (host,) = [e for e in events if e.kind == "host"]
    assert not host.ok and "host key mismatch" in host.error


def test_unreachable_host_fails_fast_naming_it(sshd):
    started = time.monotonic()
    with runner_for(sshd, "netnode", port=free_port(), connect_timeout=2) as runner:
        events = collect(runner, {"netnode": [HostCommand(("true",), "x")]})
    (host,) = [e for e in events if e.kind == "host"]
    assert not host.ok
    assert host.error.startswith("netnode: cannot connect to 127.0.0.1:")
    assert time.monotonic() - started < 10


def test_step_timeout_ends_a_hanging_command(sshd):
    with runner_for(sshd, "worker1", command_timeout=2) as runner:
        started = time.monotonic()
        events = collect(runner, {"worker1": [HostCommand(("sleep", "30"), "hangs")]})
    ended = [e for e in events if e.kind == "ended"]
    assert ended[0].status == "failed" and ended[0].exit_code == 124  # coreutils timeout
    assert time.monotonic() - started < 15


def test_a_long_script_is_one_fast_round_trip(sshd, tmp_path):
    commands = [HostCommand(("true",), f"step {i}", check=("false",)) for i in range(300)]
    with runner_for(sshd, "worker1") as runner:
        started = time.monotonic()
        events = collect(runner, {"worker1": commands})
        elapsed = time.monotonic() - started
    assert len([e for e in events if e.kind == "ended" and e.status == "ok"]) == 300
    assert runner.stats["worker1"].round_trips == 1
    assert elapsed < 20


def test_ovs_vsctl_invocations_are_counted(sshd):
    commands = [
        HostCommand(("sh", "-c", "exit 0", "ovs-vsctl"), "a transaction (stand-in)"),
        HostCommand(("true",), "in place", check=("sh", "-c", "exit 0", "ovs-vsctl-check")),
    ]
    with runner_for(sshd, "worker1") as runner:
        collect(runner, {"worker1": commands})
    assert runner.stats["worker1"].ovs_vsctl == 2  # the transaction ran, the second was only checked


def test_dry_run_runner_records_scripts_and_counts_like_a_real_run():
    runner = DryRunRunner()
    commands = [HostCommand(("ovs-vsctl", "--may-exist", "add-br", "x"), "ovs"), HostCommand(("echo", "a b"), "echo")]
    events = list(runner.run_stage({"worker1": commands}))
    assert [e.status for e in events if e.kind == "ended"] == ["skipped", "skipped"]
    (record,) = runner.records
    assert record["host"] == "worker1" and "echo 'a b'" in record["script"]
    assert record["steps"][1]["shell"] == "echo 'a b'"
    assert runner.stats["worker1"].round_trips == 1 and runner.stats["worker1"].connections == 1
    assert runner.stats["worker1"].ovs_vsctl == 1


@pytest.mark.parametrize("count", [3])
def test_one_connection_per_host_for_many_stages(sshd, count):
    with runner_for(sshd, "netnode", "worker1", "worker2") as runner:
        for _ in range(count):
            collect(runner, {h: [HostCommand(("true",), "t")] for h in ("netnode", "worker1", "worker2")})
    assert {h: (s.connections, s.round_trips) for h, s in runner.stats.items()} == {
        h: (1, count) for h in ("netnode", "worker1", "worker2")
    }


def test_several_known_hosts_files_missing_ones_skipped_and_the_first_key_wins(sshd, tmp_path):
    """PROVISIONING_KNOWN_HOSTS lists the lab's file first (absent while no lab is up), then the operator's.

    A host listed in two files takes the key of the first: a stale copy further down
    (an old checkout's file) cannot shadow the current one.
    """
    import os
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    key_type, key = (tmp_path / "k.pub").read_text().split()[:2]
    stale = tmp_path / "stale_known_hosts"
    stale.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key}\n")
    missing = tmp_path / "no-lab" / "known_hosts"
    listed = os.pathsep.join([str(missing), str(sshd.known_hosts), str(stale)])
    with runner_for(sshd, "worker1", known_hosts=listed) as runner:
        events = collect(runner, {"worker1": [HostCommand(("true",), "x")]})
    assert [e.ok for e in events if e.kind == "host"] == [True]

    reversed_order = os.pathsep.join([str(stale), str(sshd.known_hosts)])
    with runner_for(sshd, "worker1", known_hosts=reversed_order) as runner:
        events = collect(runner, {"worker1": [HostCommand(("true",), "x")]})
    (host,) = [e for e in events if e.kind == "host"]
    assert not host.ok and f"host key mismatch ({stale}, {sshd.known_hosts} has another key" in host.error


def test_unknown_host_key_names_the_known_hosts_files(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    missing = tmp_path / "lab" / "known_hosts"
    with runner_for(sshd, "worker1", known_hosts=f"{missing}:{empty}") as runner:
        events = collect(runner, {"worker1": [HostCommand(("true",), "x")]})
    (host,) = [e for e in events if e.kind == "host"]
    assert f"unknown host key (not in {missing}, {empty})" in host.error


def test_no_known_hosts_file_at_all_is_reported(sshd, tmp_path):
    missing = [tmp_path / "a", tmp_path / "b"]
    with runner_for(sshd, "worker1", known_hosts=f"{missing[0]}:{missing[1]}") as runner:
        events = collect(runner, {"worker1": [HostCommand(("true",), "x")]})
    (host,) = [e for e in events if e.kind == "host"]
    assert host.error == f"worker1: no known hosts file: none of {missing[0]}, {missing[1]} exists"
