"""Power plans: exact argv of every action, the status probe and its parser; the shell programs run
locally against a stand-in QEMU (a process naming the pid file, a fake QMP socket)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from provisioning.plans import PlanError, deploy_plan, qemu_command, shell, vm_files
from provisioning.plans import power as pw

from .factories import W1, spec, two_vm_spec, vlan, vm


def steps(plan):
    return [(p.host, p.name, c) for s in plan.stages for p in s.phases for c in p.commands]


def files1():
    return vm_files(W1, vm(1))


def test_every_action_ends_with_the_status_probe_on_the_vms_worker():
    s = two_vm_spec()
    for action in pw.POWER_ACTIONS:
        plan = pw.power_plan(s, action, [1])
        assert plan.kind == "power" and [st.name for st in plan.stages] == ["power"]
        phases = [(p.host, p.name) for p in plan.stages[0].phases]
        assert phases == [("worker1", action), ("worker1", "status")]
        assert all(c.vm == 1 for _, _, c in steps(plan) if c.vm is not None)


def test_status_probe_argv_one_triple_per_vm():
    s = spec([vm(1), vm(3)], [vlan(100, 1, 3)])
    (cmd,) = pw.status_command(s, [1, 3]).values()
    f1, f3 = vm_files(W1, vm(1)), vm_files(W1, vm(3))
    assert cmd.argv == shell.sh(
        pw.SH_POWER_STATUS, "sp-power-status", "1", f1.pidfile, f1.qmp_sock, "3", f3.pidfile, f3.qmp_sock
    )
    assert cmd.check is None and cmd.undo is None and cmd.description == "Power status of vm1, vm3"
    assert cmd.vm is None  # two VMs: the row names none


def test_shutdown_is_the_power_button_then_force_off_both_skipped_when_stopped():
    plan = pw.power_plan(two_vm_spec(), "shutdown", [1], shutdown_timeout=7)
    down, off, status = (c for _, _, c in steps(plan))
    f = files1()
    stopped = shell.not_(shell.sh(shell.SH_PIDFILE_ALIVE, "sp-alive", f.pidfile))
    assert down.argv == ("sh", "-c", pw.SH_QMP_POWERDOWN, "sp-powerdown", f.qmp_sock, f.pidfile, "7")
    assert down.check == stopped and "wait up to 7 s" in down.description
    assert off.argv == ("sh", "-c", shell.SH_KILL_PIDFILE, "sp-kill", f.pidfile) and off.check == stopped
    assert off.description == "Force off vm1 (stop its QEMU process)"
    assert status.description == "Power status of vm1"


def test_force_off_reboot_reset():
    f = files1()
    (off, _) = (c for _, _, c in steps(pw.power_plan(two_vm_spec(), "force_off", [1])))
    assert off.argv == shell.sh(shell.SH_KILL_PIDFILE, "sp-kill", f.pidfile)
    for action, word in (("reboot", "Reboot vm1"), ("reset", "Reset vm1 (hard reset")):
        (cmd, _) = (c for _, _, c in steps(pw.power_plan(two_vm_spec(), action, [1])))
        assert cmd.argv == ("sh", "-c", pw.SH_QMP_EXECUTE, "sp-qmp", f.qmp_sock, f.pidfile, "system_reset")
        assert cmd.check is None and cmd.description.startswith(word)


def test_start_is_the_vms_part_of_the_deploy_plan_with_its_checks():
    s = two_vm_spec(link_guard=True)
    plan = pw.power_plan(s, "start", [2])
    start = [c for host, phase, c in steps(plan) if phase == "start"]
    assert {host for host, _, _ in steps(plan)} == {"worker2"}
    deployed = [c for host, _, c in steps(deploy_plan(s)) if host == "worker2"]
    assert start == deployed  # same argv, checks and undo: what is in place is skipped
    assert start[-1] == qemu_command(s.worker("worker2"), s.vms[1], s.slice_name)


def test_unknown_action_and_vm_are_plan_errors():
    with pytest.raises(PlanError, match="unknown power action 'hibernate'"):
        pw.power_plan(two_vm_spec(), "hibernate", [1])
    with pytest.raises(PlanError, match="VM 9 is not deployed"):
        pw.power_plan(two_vm_spec(), "reboot", [9])
    with pytest.raises(PlanError, match="at least one VM"):
        pw.power_plan(two_vm_spec(), "reboot", [])


def test_parse_power_status():
    out = "noise\npower vm=3 state=running\npower vm=4 state=stopped\npower vm=x state=running\npower vm=5 state=\n"
    assert pw.parse_power_status(out) == {3: "running", 4: "stopped"}


# --- the shell programs, run here -------------------------------------------------------------------

needs_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat")


class FakeQmp:
    """A QMP server on a unix socket: greets, answers every command with "return", records them."""

    def __init__(self, path: str, status: str = "running") -> None:
        self.path, self.status, self.seen = path, status, []
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(4)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as f:
                f.write(b'{"QMP": {"version": {}, "capabilities": []}}\n')
                f.flush()
                for line in f:
                    cmd = json.loads(line)["execute"]
                    self.seen.append(cmd)
                    ret = {"status": self.status, "running": True} if cmd == "query-status" else {}
                    f.write(json.dumps({"return": ret}).encode() + b"\n")
                    f.flush()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def qemu(tmp_path):
    """A stand-in QEMU: a process whose command line names the pid file, and its fake QMP socket."""
    f = vm_files(W1.__class__("worker1", str(tmp_path), "tcg"), vm(1))
    (tmp_path / "vms" / "vm1").mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", f.pidfile])
    with open(f.pidfile, "w") as out:
        out.write(f"{proc.pid}\n")
    qmp = FakeQmp(f.qmp_sock)
    yield f, proc, qmp
    qmp.close()
    proc.kill()
    proc.wait()


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


@needs_socat
def test_status_probe_reads_qmp_and_the_pid_file(qemu, tmp_path):
    f, _proc, qmp = qemu
    gone = str(tmp_path / "nope.pid")
    out = run(shell.sh(pw.SH_POWER_STATUS, "t", "1", f.pidfile, f.qmp_sock, "2", gone, f.qmp_sock))
    assert out.returncode == 0
    assert pw.parse_power_status(out.stdout) == {1: "running", 2: "stopped"}
    qmp.status = "paused"
    assert "power vm=1 state=paused" in run(shell.sh(pw.SH_POWER_STATUS, "t", "1", f.pidfile, f.qmp_sock)).stdout


@needs_socat
def test_qmp_execute_and_powerdown_with_the_force_off_fallback(qemu):
    f, proc, qmp = qemu
    out = run(shell.sh(pw.SH_QMP_EXECUTE, "t", f.qmp_sock, f.pidfile, "system_reset"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert qmp.seen[-2:] == ["qmp_capabilities", "system_reset"]
    # The stand-in ignores the power button: the wait ends after its timeout, exit 0, still running.
    out = run(shell.sh(pw.SH_QMP_POWERDOWN, "t", f.qmp_sock, f.pidfile, "1"))
    assert out.returncode == 0 and "it will be forced off" in out.stdout and proc.poll() is None
    assert "system_powerdown" in qmp.seen
    assert run(shell.sh(shell.SH_KILL_PIDFILE, "t", f.pidfile)).returncode == 0
    proc.wait(timeout=10)
    # Stopped: QMP commands fail and say so; the power button step is a no-op.
    out = run(shell.sh(pw.SH_QMP_EXECUTE, "t", f.qmp_sock, f.pidfile, "system_reset"))
    assert out.returncode == 1 and "not running" in out.stdout
    assert "already stopped" in run(shell.sh(pw.SH_QMP_POWERDOWN, "t", f.qmp_sock, f.pidfile, "1")).stdout


@needs_socat
def test_powerdown_of_a_guest_that_goes_removes_its_pid_file(qemu):
    f, proc, _ = qemu
    threading.Timer(0.5, proc.kill).start()  # "the guest powered off"
    out = run(shell.sh(pw.SH_QMP_POWERDOWN, "t", f.qmp_sock, f.pidfile, "10"))
    assert out.returncode == 0 and "powered off by the guest" in out.stdout
    assert not os.path.exists(f.pidfile)
