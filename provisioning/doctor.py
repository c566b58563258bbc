"""The host doctor over SSH: is a host ready for the portal? (``manage.py hosts doctor``, the admin's button).

One connection with the engine's own runner (:class:`~provisioning.runners.FabricRunner`:
the same known-hosts files, keys and timeouts as a deploy), one round trip carrying the
read-only :func:`~provisioning.plans.doctor.doctor_command`, then the pure parser. A host
that cannot be reached is one ``ssh`` finding that says why and what to do.

The admin runs it as an RQ job (no SSH inside a request): :func:`enqueue_doctor` puts it
on the provisioning queue and :func:`doctor_result` reads the job's result back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.conf import settings
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from inventory.models import Host

from .plans.doctor import FAIL, OK, Finding, diagnose, doctor_command, parse_facts, worst
from .queue import provisioning_queue
from .runners import FabricRunner, SshTarget

DOCTOR_TIMEOUT = 60  # seconds for the doctor's script on the host (a hung ovs-vsctl gives up after 5)
RUN_DOCTOR = "provisioning.jobs.doctor_host"
DOCTOR_RESULT_TTL = 86400  # the admin shows a run's result for a day


@dataclass
class DoctorReport:
    """A host's findings, in the order an operator fixes them."""

    host: str
    role: str
    address: str
    findings: list[Finding] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    round_trips: int = 0

    @property
    def status(self) -> str:
        return worst(self.findings)

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "warn": 0, "fail": 0}
        for finding in self.findings:
            out[finding.status] += 1
        return out

    def to_dict(self) -> dict:
        return {
            "host": self.host,
            "role": self.role,
            "address": self.address,
            "status": self.status,
            "findings": [f.to_dict() for f in self.findings],
            "versions": self.versions,
            "seconds": round(self.seconds, 3),
            "round_trips": self.round_trips,
        }

    @classmethod
    def from_dict(cls, data: dict) -> DoctorReport:
        return cls(
            host=data["host"],
            role=data["role"],
            address=data["address"],
            findings=[Finding(**f) for f in data["findings"]],
            versions=data.get("versions", {}),
            seconds=data.get("seconds", 0.0),
            round_trips=data.get("round_trips", 0),
        )


def ssh_target(host: Host) -> SshTarget:
    return SshTarget(host.name, host.management_address, host.ssh_port, host.ssh_user, host.ssh_key_path)


def _unreachable(host: Host, error: str) -> Finding:
    """The ``ssh`` finding of a host the runner could not use, with the fix for its cause."""
    where = f"{host.ssh_user}@{host.management_address} -p {host.ssh_port}"
    if "unknown host key" in error or "no known hosts file" in error:
        fix = (
            f"check the host's key fingerprint, then add it to a file of PROVISIONING_KNOWN_HOSTS: "
            f"ssh-keyscan -p {host.ssh_port} {host.management_address} >> var/ssh/known_hosts"
        )
    elif "host key mismatch" in error:
        fix = "the host's key changed: if that is expected (reinstalled host), replace its line in the known-hosts file"
    elif "Authentication" in error or "auth" in error.lower():
        key = f"{host.ssh_key_path}.pub" if host.ssh_key_path else "the portal's public key"
        fix = f"add {key} to ~{host.ssh_user}/.ssh/authorized_keys on {host.management_address}"
    else:
        fix = f"check management_address and ssh_port, and that sshd runs there (ssh {where} true)"
    return Finding("ssh", FAIL, error, fix)


def run_doctor(*, host: Host, timeout: int = DOCTOR_TIMEOUT) -> DoctorReport:
    """Check ``host`` over SSH in one read-only round trip; never raises for the host's state."""
    report = DoctorReport(host.name, host.role, f"{host.management_address}:{host.ssh_port}")
    command = doctor_command(role=host.role, state_dir=host.state_dir, uplink=host.uplink)
    runner = FabricRunner(
        {host.name: ssh_target(host)},
        known_hosts=settings.PROVISIONING_KNOWN_HOSTS,
        connect_timeout=settings.PROVISIONING_CONNECT_TIMEOUT,
        command_timeout=timeout,
    )
    started = time.monotonic()
    output, exit_code, error = "", None, ""
    with runner:
        for event in runner.run_stage({host.name: [command]}):
            if event.kind == "ended":
                output, exit_code = event.output, event.exit_code
            elif event.kind == "host" and not event.ok:
                error = event.error
    report.seconds = time.monotonic() - started
    report.round_trips = runner.stat(host.name).round_trips
    if error and exit_code is None:
        report.findings = [_unreachable(host, error)]
        return report
    facts = parse_facts(output)
    report.versions = facts.versions
    ssh = Finding("ssh", OK, f"{host.ssh_user}@{host.management_address}:{host.ssh_port}, host key checked")
    report.findings = [
        ssh,
        *diagnose(facts, role=host.role, state_dir=host.state_dir, uplink=host.uplink, accel=host.accel),
    ]
    return report


# --- as an RQ job (the admin) ----------------------------------------------------------------


def enqueue_doctor(host_id: int) -> str:
    """Queue a doctor run for a host; its job id (the result page polls it)."""
    job = provisioning_queue().enqueue(
        RUN_DOCTOR,
        host_id,
        job_timeout=DOCTOR_TIMEOUT + 2 * settings.PROVISIONING_CONNECT_TIMEOUT + 30,
        result_ttl=DOCTOR_RESULT_TTL,
        failure_ttl=DOCTOR_RESULT_TTL,
        description=f"host doctor for host {host_id}",
    )
    return job.id


@dataclass(frozen=True)
class DoctorRun:
    """Where a queued doctor run is: ``state`` queued / running / done / failed / unknown."""

    state: str
    report: DoctorReport | None = None
    error: str = ""


def doctor_result(job_id: str, *, host_id: int) -> DoctorRun:
    """The state (and, when done, the report) of a doctor job of host ``host_id``."""
    queue = provisioning_queue()
    try:
        job = Job.fetch(job_id, connection=queue.connection)
    except NoSuchJobError:
        return DoctorRun("unknown", error="no such doctor run (results are kept for a day)")
    if job.func_name != RUN_DOCTOR or list(job.args) != [host_id]:
        return DoctorRun("unknown", error="that run is not a doctor run of this host")
    status = job.get_status(refresh=True)
    if status == JobStatus.FINISHED:
        return DoctorRun("done", DoctorReport.from_dict(job.return_value()))
    if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
        result = job.latest_result()
        reason = (result.exc_string or "").strip().splitlines()[-1:] if result else []
        return DoctorRun("failed", error=reason[0] if reason else f"the job {status}")
    return DoctorRun("running" if status == JobStatus.STARTED else "queued")
