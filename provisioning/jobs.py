"""RQ jobs: thin. Load by id, run, report what happened."""

from __future__ import annotations

from django.db import close_old_connections

from inventory.models import Host

from . import doctor, executor, reaper


def run_deployment(deployment_id: int) -> str:
    """Run one deployment (deploy, redeploy or destroy); returns its final status."""
    close_old_connections()
    try:
        reaper.reap_abandoned()  # a worker starting a job also notices jobs whose worker died
        return executor.execute(deployment_id=deployment_id).status
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
