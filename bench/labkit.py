"""What the lab benchmarks (connections, deploy latency) share: the lab, an RQ worker, guests' consoles.

- :class:`LabSession` makes sure the local lab is up under ``LAB_DIR`` (brings it
  up with ``manage.py lab up`` when it is not, and then takes it down at the
  end), registers its hosts and guest image in the scratch database, and
  refuses to touch a lab that another ``LAB_DIR`` runs (the lab's namespaces
  are global to the machine).
- :class:`RqWorker`: a real ``manage.py rqworker provisioning`` process on the
  benchmarks' own Redis database, stopped by its process group id.
- :func:`wait_ready`: "every VM has its lease on every linked NIC and its ping
  to its ring neighbour succeeds", read from the guests' own ``SP:`` lines
  (``console.log``) and a ``ping`` typed on their serial consoles; it stops at
  once, with the deployment's error, when :func:`deployment_gave_up` says the
  deployment failed (or the worker died) instead of waiting out its timeout.
- :func:`bare_run`: run host commands directly in a lab host's namespaces
  (``nsenter`` into its sshd's network and mount namespaces, ``sh -c SCRIPT``),
  no SSH, no portal, no queue.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import REPO, log

RQ_QUEUE = "provisioning"
LEASE_TIMEOUT = 300.0


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("this benchmark needs root (the lab: namespaces, OVS, sshd, QEMU)")


def manage(*args: str, env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def child_env(**extra: str) -> dict[str, str]:
    """The environment of the benchmark's child processes (scratch DB, bench Redis, lab paths)."""
    from django.conf import settings

    return {
        **os.environ,
        "LAB_DIR": str(Path(settings.LAB_DIR).resolve()),
        "PROVISIONING_KNOWN_HOSTS": str(settings.PROVISIONING_KNOWN_HOSTS),
        "PROVISIONING_RUNNER": "fabric",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class LabSession:
    """The lab for one benchmark run (see the module docstring)."""

    def __init__(self, *, keep_lab: bool = False, take_over: bool = False) -> None:
        from django.conf import settings

        from provisioning.lab.topology import LabPaths

        self.paths = LabPaths(Path(settings.LAB_DIR).resolve())
        self.keep_lab = keep_lab
        self.take_over = take_over
        self.brought_up = False
        self.guest = None

    def is_up(self) -> bool:
        from provisioning.lab import cluster

        return cluster.is_up(self.paths)

    def foreign_lab(self) -> bool:
        """A lab of another LAB_DIR (e.g. a tests/lab run) has processes in the lab namespaces."""
        from provisioning.lab import cluster

        return any(root != self.paths.root for root in cluster.running_lab_roots())

    def __enter__(self) -> LabSession:
        from django.conf import settings

        from provisioning.lab import guest, inventory
        from provisioning.lab.hostkeys import untrusted_hint

        require_root()
        if hint := untrusted_hint(self.paths, settings.PROVISIONING_KNOWN_HOSTS):
            raise SystemExit(hint)  # every deploy would fail at its first SSH connection
        if self.is_up():
            log(f"lab already up under {self.paths.root}: using it (and leaving it up)")
        else:
            if self.foreign_lab() and not self.take_over:
                raise SystemExit(
                    f"another lab (not under LAB_DIR={self.paths.root}) is using the lab namespaces, e.g. a "
                    "tests/lab run; wait for it to finish, or pass --take-over-lab"
                )
            started = time.monotonic()
            force = ["--force"] if self.take_over else []
            out = manage("lab", "up", "--no-image", *force, env=child_env())
            self.brought_up = True
            log(f"`manage.py lab up` in {time.monotonic() - started:.1f} s: {out.strip().splitlines()[-1]}")
        inventory.register_hosts(self.paths, uplink=inventory.network_node_uplink())
        started = time.monotonic()
        self.guest = guest.ensure_guest(self.paths.images_dir)
        inventory.register_image(self.guest)
        log(f"guest image ready in {time.monotonic() - started:.1f} s (kernel {self.guest.kernel_version})")
        return self

    def __exit__(self, *exc) -> None:
        if self.brought_up and not self.keep_lab:
            started = time.monotonic()
            try:
                manage("lab", "down", env=child_env())
                log(f"`manage.py lab down` in {time.monotonic() - started:.1f} s")
            except Exception as err:  # report, never mask the benchmark's own error
                log(f"lab down failed: {err}")

    def ovs_env(self, host: str) -> dict[str, str]:
        from provisioning.lab.cluster import ovs_env

        return ovs_env(self.paths, host)

    def accepted_ssh_logins(self, host: str) -> int:
        """SSH logins the host's sshd accepted so far (its own log): an independent connection count."""
        try:
            text = (self.paths.sshd_dir(host) / "sshd.log").read_text(errors="replace")
        except OSError:
            return 0
        return text.count("Accepted publickey")

    def probe_accel(self) -> dict[str, tuple[str, float]]:
        """Run the engine's own KVM probe command on every worker (bare) and store the result.

        A worker is probed once in its life (the executor stores ``accel_detected``);
        doing it here keeps that one-time cost out of every measured deploy.
        """
        from django.utils import timezone

        from inventory.models import Host
        from provisioning import plans

        found = {}
        for host in Host.objects.filter(role=Host.Role.WORKER, enabled=True, name__in=["worker1", "worker2"]):
            started = time.monotonic()
            result = bare_run(self, host.name, [plans.kvm_probe_command().argv], check=False)
            accel = plans.parse_kvm_probe(result.stdout)
            Host.objects.filter(pk=host.pk).update(accel_detected=accel, accel_probed_at=timezone.now())
            found[host.name] = (accel, time.monotonic() - started)
        return found


class RqWorker:
    """A real ``manage.py rqworker provisioning`` process, in its own session, stopped by PID."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> RqWorker:
        import django_rq

        queue = django_rq.get_queue(RQ_QUEUE)
        stale = queue.count
        queue.empty()
        if stale:
            log(f"emptied {stale} stale job(s) from the benchmark queue")
        self._log = open(self.log_path, "ab")  # closed in __exit__
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", RQ_QUEUE],
            cwd=REPO,
            env=child_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log(f"rqworker pid {self.process.pid} (log {self.log_path})")
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __exit__(self, *exc) -> None:
        if self.process is None:
            return
        from provisioning.lab import system

        pid = self.process.pid
        system.stop_process_group(self.process, timeout=20)
        self._log.close()
        log(f"rqworker {pid} stopped; {self.forget_jobs()} job(s) and their results removed from Redis")

    @staticmethod
    def forget_jobs() -> int:
        """Delete this run's RQ jobs and results (kept for days otherwise) from the benchmark Redis db."""
        import django_rq
        from rq.job import Job
        from rq.results import Result

        from provisioning.models import Deployment

        conn = django_rq.get_connection(RQ_QUEUE)
        removed = 0
        for job_id in Deployment.objects.exclude(job_id="").values_list("job_id", flat=True):
            with contextlib.suppress(Exception):
                job = Job.fetch(job_id, connection=conn)
                Result.delete_all(job)
                job.delete()
                removed += 1
        return removed


def wait_registered(workers: Sequence[RqWorker], timeout: float = 120) -> float:
    """Seconds until every RQ worker process has registered with Redis (ready to take a job).

    A job requested earlier waits for the worker's own start-up (Django loading: seconds on a busy
    machine), which is no part of a deploy: the benchmarks start their clocks after this.
    """
    import django_rq
    from rq import Worker

    pids = {w.process.pid for w in workers if w.process is not None}
    started = time.monotonic()
    while True:
        ready = {w.pid for w in Worker.all(queue=django_rq.get_queue(RQ_QUEUE))} & pids
        if ready == pids:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"RQ workers {sorted(pids - ready)} not ready after {timeout:.0f} s")
        time.sleep(0.2)


# --- running plans without the portal -----------------------------------------------------------


def bare_script(argvs: Sequence[Sequence[str]], *, stop_on_error: bool = True) -> str:
    lines = ["set -e"] if stop_on_error else []
    lines += [shlex.join(argv) for argv in argvs]
    return "\n".join(lines) + "\n"


def host_pid(lab: LabSession, host: str) -> int:
    """The PID of lab host ``host``'s sshd: its network and mount namespaces are the host's."""
    from provisioning.lab import system

    pid = system.pid_from_file(lab.paths.sshd_dir(host) / "sshd.pid", must_mention=str(lab.paths.root))
    if not pid:
        raise RuntimeError(f"{host}: its sshd is not running (is the lab up?)")
    return pid


def bare_run(lab: LabSession, host: str, argvs: Sequence[Sequence[str]], *, check: bool = True):
    """Run commands as one local script inside lab host ``host`` (no SSH), its OVS through OVS_RUNDIR.

    The script enters the network *and mount* namespaces of the host's sshd
    (``nsenter``), i.e. exactly where the portal's SSH sessions run: the DHCP
    namespaces the plans create (``ip netns add``) are mounts, and a throw-away
    mount namespace (a fresh ``ip netns exec``) would lose them when it exits.
    """
    enter = ("nsenter", "--target", str(host_pid(lab, host)), "--net", "--mount")
    result = subprocess.run(
        [*enter, "sh", "-c", bare_script(argvs, stop_on_error=check)],
        env={**os.environ, **lab.ovs_env(host)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"bare script on {host} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result


def bare_plan(lab: LabSession, plan) -> float:
    """Every command of ``plan`` (checks skipped), one script per host, all hosts at once; returns seconds."""
    by_host: dict[str, list] = {}
    for stage in plan.stages:
        for phase in stage.phases:
            by_host.setdefault(phase.host, []).extend(cmd.argv for cmd in phase.commands)
    started = time.monotonic()
    errors: list[str] = []

    def one(host: str) -> None:
        try:
            bare_run(lab, host, by_host[host], check=not plan.kind == "destroy")
        except Exception as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=one, args=(h,)) for h in by_host]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    return time.monotonic() - started


def bare_teardown(lab: LabSession, plan) -> None:
    """Run a destroy plan bare, stage by stage (VMs stopped before their ports go)."""
    from provisioning.plans import Plan

    for stage in plan.stages:
        bare_plan(lab, Plan("destroy", (stage,)))


# --- readiness: leases and pings ------------------------------------------------------------------


@dataclass
class GuestEnd:
    """One VM: where its console is, the NICs that must lease, the neighbour it must ping."""

    vm_id: int
    name: str
    state_dir: str
    nics: list[str]
    ping_nic: str  # my NIC on the link to the neighbour
    peer: int  # the neighbour's vm id
    peer_nic: str
    leases: dict[str, str] = field(default_factory=dict)
    leased_at: float | None = None
    pinged_at: float | None = None
    ping_tries: int = 0


def ring_ends(slice_obj) -> dict[int, GuestEnd]:
    """Each VM of a ring slice pings its successor (vm1 -> vm2 -> ... -> vm1) over their link."""
    from slices.models import VM, Link

    vms = list(VM.objects.filter(slice=slice_obj).select_related("host").order_by("id"))
    links = list(Link.objects.filter(slice=slice_obj).select_related("a", "b"))
    nics: dict[int, list[str]] = {vm.pk: [] for vm in vms}
    between: dict[frozenset, tuple] = {}
    for link in links:
        nics[link.a.vm_id].append(link.a.name)
        nics[link.b.vm_id].append(link.b.name)
        between[frozenset((link.a.vm_id, link.b.vm_id))] = (link.a, link.b)
    ends = {}
    for i, vm in enumerate(vms):
        peer = vms[(i + 1) % len(vms)]
        a, b = between[frozenset((vm.pk, peer.pk))]
        mine, theirs = (a, b) if a.vm_id == vm.pk else (b, a)
        ends[vm.pk] = GuestEnd(vm.pk, vm.name, vm.host.state_dir, sorted(nics[vm.pk]), mine.name, peer.pk, theirs.name)
    return ends


def assert_fresh(ends: dict[int, GuestEnd]) -> None:
    """No console log from an earlier run may be read as this run's."""
    from provisioning.lab import console

    for end in ends.values():
        if console.console_log(end.state_dir, end.vm_id).exists():
            raise RuntimeError(f"{console.console_log(end.state_dir, end.vm_id)} exists before the start")


LEASE_LINE = r"SP: DHCP {nic} ok ip=([0-9.]+) mask="  # mask=: the line is complete, not being written
LEASE_UPTIME = re.compile(r"SP: DHCP eth\d+ ok ip=\S+ mask=\S+ .*?uptime=([0-9.]+)")


def guest_lease_uptime(ends: dict[int, GuestEnd]) -> float:
    """The latest guest clock reading (seconds since its kernel started) at which a guest got a lease:
    how long the guests themselves took from boot to their last lease (a slower boot shows here)."""
    from provisioning.lab import console

    found = [float(m) for e in ends.values() for m in LEASE_UPTIME.findall(console.read_log(e.state_dir, e.vm_id))]
    return max(found) if found else float("nan")


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) of these processes, of their children that ended and were waited for
    (the RQ worker's jobs, the SSH sessions of a lab host's sshd), and of the sshd processes below
    them that still run: the connections a worker keeps between jobs (provisioning.sshpool)."""

    def ticks(pid: int) -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return sum(int(x) for x in fields[11:15])  # utime stime cutime cstime

    def live_sshd_below(pid: int) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(pid), "-x", "sshd(-session)?"], capture_output=True, text=True).stdout
        return [q for child in map(int, out.split()) for q in (child, *live_sshd_below(child))]

    total = 0
    for pid in pids:
        for one in (pid, *live_sshd_below(pid)):
            try:
                total += ticks(one)
            except (FileNotFoundError, ProcessLookupError):  # ended meanwhile: now in its parent's count
                continue
    return total / os.sysconf("SC_CLK_TCK")


class GaveUp(RuntimeError):
    """A wait stopped early: what it waited for cannot happen any more (the deployment failed)."""


def wait_ready(
    ends: dict[int, GuestEnd],
    t0: float,
    *,
    timeout: float = LEASE_TIMEOUT,
    gave_up: Callable[[], str | None] | None = None,
    poll: float = 0.5,
) -> float:
    """Seconds from ``t0`` until every VM has all its leases and one ping to its neighbour succeeded.

    ``gave_up`` (see :func:`deployment_gave_up`) is asked every ``poll`` seconds, in
    this thread (it may read the database), why waiting is pointless; as soon as it
    answers, the wait stops with :class:`GaveUp` and that reason instead of running
    into ``timeout`` (a deployment that failed at its first SSH connection never
    starts a guest).
    """
    from provisioning.lab import console

    deadline = t0 + timeout
    failures: list[str] = []
    stop = threading.Event()

    def leases_of(end: GuestEnd) -> bool:
        while True:
            text = console.read_log(end.state_dir, end.vm_id)
            for nic in end.nics:
                if nic not in end.leases and (m := re.search(LEASE_LINE.format(nic=nic), text)):
                    end.leases[nic] = m.group(1)
            if len(end.leases) == len(end.nics):
                end.leased_at = time.monotonic() - t0
                return True
            if time.monotonic() > deadline:
                raise TimeoutError(f"{end.name}: leases {end.leases} of {end.nics} after {timeout:.0f} s")
            if stop.wait(0.05):
                return False

    def guest(end: GuestEnd) -> None:
        try:
            if not leases_of(end):
                return
            peer = ends[end.peer]
            while end.peer_nic not in peer.leases:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{end.name}: neighbour {peer.name} has no lease on {end.peer_nic}")
                if stop.wait(0.05):
                    return
            address = peer.leases[end.peer_nic]
            sock = console.console_socket(end.state_dir, end.vm_id)
            while not stop.is_set():
                end.ping_tries += 1
                result = console.run_command(sock, f"ping -c 1 -W 1 {address}", timeout=15)
                if result.ok:
                    end.pinged_at = time.monotonic() - t0
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{end.name}: no reply from {address} after {end.ping_tries} pings")
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")

    # Daemons: after a give-up, a thread still inside a console command ends on its own.
    threads = [threading.Thread(target=guest, args=(e,), name=f"ready-{e.name}", daemon=True) for e in ends.values()]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            if gave_up is not None and (reason := gave_up()):
                stop.set()
                raise GaveUp(reason)
            t.join(timeout=poll)
    if failures:
        # A deployment that failed explains missing leases better than the timeout does.
        if gave_up is not None and (reason := gave_up()):
            raise GaveUp(reason)
        raise RuntimeError("guests not ready: " + "; ".join(failures))
    return max(e.pinged_at for e in ends.values())


def deployment_gave_up(deployment_id: int, worker: RqWorker) -> Callable[[], str | None]:
    """For :func:`wait_ready`: the failed deployment's error, or that the RQ worker died; None meanwhile."""
    from provisioning.models import Deployment

    def reason() -> str | None:
        row = Deployment.objects.filter(pk=deployment_id).values("status", "error").first()
        if row and row["status"] == Deployment.Status.FAILED:
            return f"deployment {deployment_id} failed: {row['error'] or '(no error recorded)'}"
        if not worker.alive():
            return f"the RQ worker died; see {worker.log_path}"
        return None

    return reason


def wait_deployment(deployment_id: int, worker: RqWorker, *, timeout: float = 600):
    """Poll the deployment row until the job ends; returns it."""
    from provisioning.models import Deployment

    deadline = time.monotonic() + timeout
    while True:
        dep = Deployment.objects.get(pk=deployment_id)
        if dep.status in (Deployment.Status.SUCCEEDED, Deployment.Status.FAILED):
            return dep
        if not worker.alive():
            raise RuntimeError(f"the RQ worker died; see {worker.log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"deployment {deployment_id} still {dep.status} after {timeout:.0f} s")
        time.sleep(0.1)


def api_client(user):
    """The portal's API in this process, as ``user`` (the deploy request goes through the real view)."""
    from rest_framework.test import APIClient

    client = APIClient(HTTP_HOST="127.0.0.1")
    client.force_authenticate(user)
    return client


def api_action(client, slice_id: int, action: str) -> int:
    response = client.post(f"/api/slices/{slice_id}/{action}/", {}, format="json")
    if response.status_code != 202:
        raise RuntimeError(f"{action} of slice {slice_id}: HTTP {response.status_code}: {response.data}")
    return response.data["id"]


def destroy_quietly(client, slice_obj, worker) -> None:
    """After a failure: destroy what a deploy may have left on the lab hosts (best effort, logged)."""
    from slices.models import Slice

    status = Slice.objects.filter(pk=slice_obj.pk).values_list("status", flat=True).first()
    if status in (None, "draft"):
        return
    try:
        if status in ("queued", "deploying", "destroying"):
            time.sleep(5)  # let the running job end first
        dep = wait_deployment(api_action(client, slice_obj.pk, "destroy"), worker)
        log(f"clean-up destroy of slice {slice_obj.pk}: {dep.status}")
    except Exception as exc:
        log(f"clean-up destroy of slice {slice_obj.pk} failed: {exc}")
