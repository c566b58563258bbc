"""Power actions on deployed VMs: start, shut down, reboot, reset, force off, and a status probe.

Every action runs on the VM's worker and ends with a read-only status probe that prints one
line per VM, ``power vm=<id> state=<state>`` (:func:`parse_power_status`): a VM's status comes
from the host, not from what the portal last asked for.

- ``start``: the VM's own part of the deploy plan (state directory, TAPs, ports, guards, disk
  overlay, QEMU) with the same checks, so what is in place is skipped and a running VM is left
  alone. The TAPs outlive QEMU, so its links come back as they were.
- ``shutdown``: QMP ``system_powerdown`` (the ACPI power button), then up to a timeout for the
  process to exit; a guest that ignores the button is forced off by the next step (skipped
  when the guest went by itself).
- ``reboot`` / ``reset``: QMP ``system_reset`` in the same QEMU process, so the TAPs, MACs and
  the guest's DHCP reservations stay. Both are a hard reset (the reset button: the guest is not
  asked, unwritten caches are lost); without a guest agent QEMU has no way to ask a guest to
  reboot. They are two actions so that ``reboot`` can become a guest-side reboot later
  without clients changing.
- ``force_off``: stop the QEMU process of the pid file (SIGTERM, then SIGKILL), remove the pid
  file: the pull of the plug. A later start or redeploy boots it again (its QEMU check fails).

Values reach the shell only as positional parameters (:func:`provisioning.plans.shell.sh`).
"""

from __future__ import annotations

from collections.abc import Collection

from .layout import vm_files
from .model import HostCommand, Phase, Plan, Stage
from .shell import SH_KILL_PIDFILE, SH_PIDFILE_ALIVE, not_, sh
from .spec import PlanError, SliceSpec, VmSpec, WorkerSpec
from .worker import worker_ports_commands, worker_vms_commands

START, SHUTDOWN, REBOOT, RESET, FORCE_OFF = "start", "shutdown", "reboot", "reset", "force_off"
POWER_ACTIONS = (START, SHUTDOWN, REBOOT, RESET, FORCE_OFF)
STAGE_POWER = "power"
PHASE_STATUS = "status"  # the probe's phase: its step rows hold the lines parse_power_status reads
SHUTDOWN_TIMEOUT = 60  # seconds a guest gets to power itself off before it is forced off
STOPPED = "stopped"  # the state the probe prints when no QEMU of the pid file runs

# "ours": the pid of the file $f is alive and its command line names that very pid file (as
# SH_PIDFILE_ALIVE / SH_KILL_PIDFILE: no pid-reuse surprises, a zombie counts as gone).
_OURS = (
    'p=$(cat "$f" 2>/dev/null); case "$p" in ""|*[!0-9]*) p=0;; esac; '
    'ours() { [ "$p" != 0 ] && tr "\\000" "\\n" < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$f"; }; '
)
# One QMP command to a running QEMU: SOCKET PIDFILE COMMAND. Fails (exit 1) when the VM is not
# running or QEMU does not answer both the handshake and the command with "return".
SH_QMP_EXECUTE = (
    "s=$1; f=$2; " + _OURS + 'ours || { echo "not running: no live QEMU for $f"; exit 1; }; '
    'out=$( { echo \'{"execute":"qmp_capabilities"}\'; printf \'{"execute":"%s"}\\n\' "$3"; sleep 0.3; } '
    '| socat -t 0.5 - "UNIX-CONNECT:$s") || exit 1; '
    'printf "%s\\n" "$out"; [ "$(printf "%s\\n" "$out" | grep -c \'"return"\')" = 2 ]'
)
# ACPI power button, then wait: SOCKET PIDFILE TIMEOUT. Exit 0 whether or not the guest went (the
# force-off step after it decides); says which. A guest gone removes its pid file.
SH_QMP_POWERDOWN = (
    "s=$1; f=$2; t=$3; " + _OURS + 'ours || { echo "already stopped"; exit 0; }; '
    '{ echo \'{"execute":"qmp_capabilities"}\'; echo \'{"execute":"system_powerdown"}\'; sleep 0.3; } '
    '| socat -t 0.5 - "UNIX-CONNECT:$s" || echo "QMP did not answer"; '
    "i=0; while ours && [ $i -lt $((t * 10)) ]; do sleep 0.1; i=$((i+1)); done; "
    'if ours; then echo "still running after $t s: it will be forced off"; '
    'else echo "powered off by the guest"; rm -f "$f"; fi'
)
# Status: VMID PIDFILE SOCKET [VMID PIDFILE SOCKET]... One line per VM: "power vm=ID state=S", S the
# QMP run state (running, paused, shutdown, guest-panicked, ...) or "stopped" (no QEMU of the pid file),
# "unknown" when QEMU runs but QMP did not say.
SH_POWER_STATUS = (
    "while [ $# -ge 3 ]; do f=$2; " + _OURS + "if ours; then "
    'st=$( { echo \'{"execute":"qmp_capabilities"}\'; echo \'{"execute":"query-status"}\'; sleep 0.3; } '
    '| socat -t 0.5 - "UNIX-CONNECT:$3" 2>/dev/null '
    '| sed -n \'s/.*"status": *"\\([a-z-]*\\)".*/\\1/p\' | tail -n 1); '
    'else st=stopped; fi; echo "power vm=$1 state=${st:-unknown}"; shift 3; done'
)


def _vm_of(spec: SliceSpec, vm_id: int) -> tuple[WorkerSpec, VmSpec]:
    for vm in reversed(spec.vms):  # a merged footprint may hold two versions of a VM: the newer is last
        if vm.id == vm_id:
            return spec.worker(vm.host), vm
    raise PlanError(f"VM {vm_id} is not deployed in slice {spec.slice_name!r}")


def qmp_command(worker: WorkerSpec, vm: VmSpec, command: str, description: str) -> HostCommand:
    """One QMP command (``system_reset``, ...) to the VM's running QEMU; fails when it does not run."""
    files = vm_files(worker, vm)
    return HostCommand(sh(SH_QMP_EXECUTE, "sp-qmp", files.qmp_sock, files.pidfile, command), description, vm=vm.id)


def alive_check(worker: WorkerSpec, vm: VmSpec) -> tuple[str, ...]:
    """Exit 0 when the VM's QEMU does NOT run (a check: "already stopped", skip the step)."""
    return not_(sh(SH_PIDFILE_ALIVE, "sp-alive", vm_files(worker, vm).pidfile))


def force_off_command(worker: WorkerSpec, vm: VmSpec) -> HostCommand:
    """Stop the VM's QEMU at once (SIGTERM, SIGKILL after 10 s), remove its pid file; skipped when stopped."""
    return HostCommand(
        sh(SH_KILL_PIDFILE, "sp-kill", vm_files(worker, vm).pidfile),
        f"Force off {vm.name} (stop its QEMU process)",
        check=alive_check(worker, vm),
        vm=vm.id,
    )


def powerdown_command(worker: WorkerSpec, vm: VmSpec, timeout: int) -> HostCommand:
    """The ACPI power button, then wait up to ``timeout`` s for the guest to power off."""
    files = vm_files(worker, vm)
    return HostCommand(
        sh(SH_QMP_POWERDOWN, "sp-powerdown", files.qmp_sock, files.pidfile, str(int(timeout))),
        f"Shut down {vm.name} (ACPI power button, wait up to {int(timeout)} s)",
        check=alive_check(worker, vm),
        vm=vm.id,
    )


def status_command(spec: SliceSpec, vm_ids: Collection[int]) -> dict[str, HostCommand]:
    """Per worker: the read-only status probe of the given VMs (one line each, :func:`parse_power_status`)."""
    args: dict[str, list[str]] = {}
    names: dict[str, list[str]] = {}
    for vm_id in vm_ids:
        worker, vm = _vm_of(spec, vm_id)
        files = vm_files(worker, vm)
        args.setdefault(worker.name, []).extend([str(vm.id), files.pidfile, files.qmp_sock])
        names.setdefault(worker.name, []).append(vm.name)
    return {
        host: HostCommand(
            sh(SH_POWER_STATUS, "sp-power-status", *argv),
            f"Power status of {', '.join(names[host])}",
            vm=int(argv[0]) if len(argv) == 3 else None,
        )
        for host, argv in args.items()
    }


def parse_power_status(output: str) -> dict[int, str]:
    """``power vm=ID state=S`` lines -> {vm id: state}; other lines are ignored."""
    out: dict[int, str] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[0] != "power":
            continue
        vm, state = parts[1].partition("=")[2], parts[2].partition("=")[2]
        if parts[1].startswith("vm=") and parts[2].startswith("state=") and vm.isdigit() and state:
            out[int(vm)] = state
    return out


def action_commands(spec: SliceSpec, vm: VmSpec, action: str, *, shutdown_timeout: int) -> tuple[HostCommand, ...]:
    """The commands of one action on one VM (before the status probe)."""
    worker = spec.worker(vm.host)
    if action == START:
        guarded = {v.vlan: v for v in spec.vlans} if spec.link_guard else None
        ports = worker_ports_commands(worker, [vm], guarded=guarded)
        return (*ports, *worker_vms_commands(worker, [vm], spec.slice_name))
    if action == SHUTDOWN:
        return (powerdown_command(worker, vm, shutdown_timeout), force_off_command(worker, vm))
    if action == REBOOT:
        return (qmp_command(worker, vm, "system_reset", f"Reboot {vm.name} (reset in the same QEMU process)"),)
    if action == RESET:
        return (qmp_command(worker, vm, "system_reset", f"Reset {vm.name} (hard reset, the guest is not asked)"),)
    if action == FORCE_OFF:
        return (force_off_command(worker, vm),)
    raise PlanError(f"unknown power action {action!r}: one of {', '.join(POWER_ACTIONS)}")


def power_plan(
    spec: SliceSpec, action: str, vm_ids: Collection[int], *, shutdown_timeout: int = SHUTDOWN_TIMEOUT
) -> Plan:
    """One stage: per worker, a phase with the action's commands for its VMs, then the status probe.

    ``spec`` is what is deployed (the slice's footprint), so a start boots the VM as it was
    deployed, not as it has been edited since (that is a redeploy).
    """
    if action not in POWER_ACTIONS:
        raise PlanError(f"unknown power action {action!r}: one of {', '.join(POWER_ACTIONS)}")
    if not vm_ids:
        raise PlanError("a power action needs at least one VM")
    phases: list[Phase] = []
    per_host: dict[str, list[HostCommand]] = {}
    for vm_id in vm_ids:
        _, vm = _vm_of(spec, vm_id)
        per_host.setdefault(vm.host, []).extend(action_commands(spec, vm, action, shutdown_timeout=shutdown_timeout))
    status = status_command(spec, vm_ids)
    for host, cmds in per_host.items():
        phases.append(Phase(action, host, tuple(cmds)))
        phases.append(Phase(PHASE_STATUS, host, (status[host],)))
    return Plan("power", (Stage(STAGE_POWER, tuple(phases)),))
