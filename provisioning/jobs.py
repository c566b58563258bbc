"""RQ jobs: thin. Load by id, run, report what happened."""

from __future__ import annotations

from django.db import close_old_connections

from inventory.models import Host

from . import doctor, drift, executor, expiry, reaper, retention


def run_deployment(deployment_id: int) -> str:
    """Run one deployment (deploy, redeploy or destroy); returns its final status."""
    close_old_connections()
    try:
        reaper.reap_abandoned()  # a worker starting a job also notices jobs whose worker died
        deployment = executor.execute(deployment_id=deployment_id)
        if deployment.kind == deployment.Kind.REPAIR and deployment.status == deployment.Status.SUCCEEDED:
            # The slice's health says so at once, not a check interval later.
            drift.check_hosts(names=drift.slice_hosts(slice_obj=deployment.slice), repair=False)
        return deployment.status
    finally:
        close_old_connections()


def reap_abandoned() -> str:
    """The scheduled reaper (provisioning.cron): fail deployments whose job can no longer finish."""
    close_old_connections()
    try:
        found = reaper.reap_abandoned()
        return f"{len(found)} abandoned deployment(s) failed"
    finally:
        close_old_connections()


def doctor_host(host_id: int) -> dict:
    """The host doctor (the admin's button): the report as a dict, kept as the job's result."""
    close_old_connections()
    try:
        return doctor.run_doctor(host=Host.objects.get(pk=host_id)).to_dict()
    finally:
        close_old_connections()


def prune_history() -> str:
    """The scheduled pruning (provisioning.cron): old deployments and their steps, as provisioning.retention says."""
    close_old_connections()
    try:
        pruned = retention.prune_history()
        return f"{pruned.deployments} deployment(s) and {pruned.steps} step row(s) pruned"
    finally:
        close_old_connections()


def check_host(name: str) -> str:
    """One host's drift check (provisioning.drift): observe it, record its and its slices' health."""
    close_old_connections()
    try:
        reports = drift.check_hosts(names=[name])
        if not reports:
            return f"{name}: not an enabled host"
        r = reports[0]
        state = "reachable" if r.reachable else f"unreachable ({r.error})"
        found = f"{len(r.differences)} difference(s), {len(r.orphans)} orphan(s), {len(r.repaired)} repaired"
        return f"{name}: {state}, {found}"
    finally:
        close_old_connections()


def check_all_hosts() -> str:
    """The scheduled drift check (provisioning.cron): one check job per enabled host."""
    close_old_connections()
    try:
        names = list(Host.objects.filter(enabled=True).order_by("name").values_list("name", flat=True))
        drift.enqueue_checks(names)
        return f"{len(names)} host check(s) queued"
    finally:
        close_old_connections()


def expire_slices() -> str:
    """The scheduled expiry (provisioning.cron): destroy the deployed slices whose lifetime has passed."""
    close_old_connections()
    try:
        found = expiry.expire_slices()
        return f"{sum(1 for e in found if e.deployment_id)} expired slice(s) being destroyed"
    finally:
        close_old_connections()
