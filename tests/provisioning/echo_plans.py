"""Safe stand-ins for real plans in tests that run the executor over real SSH.

Every command of a real plan is replaced by one that appends the real command's
shell text to ``commands.log`` in the host's state dir (and optionally sleeps),
so the whole machinery (SSH, scripts, markers, step rows, jobs) runs for real
while nothing touches the machine's network. Checks are dropped (they would look
at the real machine). A command whose description contains ``fail`` fails like a
real one would (stderr, exit code 3).
"""

from dataclasses import replace

from provisioning.plans import HostCommand, Plan
from provisioning.scripts import shell_text

ECHO = 'printf "%s\\n" "$2" >> "$1"; sleep "$3"'
FAIL = 'echo "$1" >&2; exit 3'


def echo_plan(plan: Plan, logs: dict[str, str], *, fail: str = "", sleep: float = 0) -> Plan:
    def swap(host: str, cmd: HostCommand) -> HostCommand:
        if fail and fail in cmd.description:
            argv = (
                "sh",
                "-c",
                FAIL,
                "sp-fail",
                f"injected failure of {shell_text(cmd.argv)[:60]}: Operation not permitted",
            )
        else:
            argv = ("sh", "-c", ECHO, "sp-echo", logs[host], shell_text(cmd.argv), str(sleep))
        return replace(cmd, argv=argv, check=None)

    return replace(
        plan,
        stages=tuple(
            replace(
                st, phases=tuple(replace(p, commands=tuple(swap(p.host, c) for c in p.commands)) for p in st.phases)
            )
            for st in plan.stages
        ),
    )


def real_shell_by_host(plan: Plan) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for stage in plan.stages:
        for phase in stage.phases:
            out.setdefault(phase.host, []).extend(shell_text(c.argv) for c in phase.commands)
    return out


def install(*, monkeypatch=None, fail: str = "", sleep: float = 0, seen: list | None = None):
    """Patch provisioning.specs.plan_for so that jobs run echo plans (``seen`` gets the real plans).

    With pytest's ``monkeypatch`` the patch is undone after the test; without it (the
    worker process) it lasts for the process.
    """
    from inventory.models import Host
    from provisioning import specs

    real = specs.plan_for

    def plan_for(**kwargs):
        plan, guard = real(**kwargs)
        if seen is not None:
            seen.append(plan)
        logs = {h.name: f"{h.state_dir}/commands.log" for h in Host.objects.all()}
        return echo_plan(plan, logs, fail=fail, sleep=sleep), guard

    if monkeypatch is not None:
        monkeypatch.setattr(specs, "plan_for", plan_for)
    else:
        specs.plan_for = plan_for
    return plan_for
