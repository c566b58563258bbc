"""RQ jobs: thin. Load by id, run the executor, report what happened."""

from __future__ import annotations

from django.db import close_old_connections


def run_deployment(deployment_id: int) -> str:
    """Run one deployment (deploy, redeploy or destroy); returns its final status."""
    from . import executor, services

    close_old_connections()
    try:
        services.reap_abandoned()  # a worker starting a job also notices jobs whose worker died
        return executor.execute(deployment_id=deployment_id).status
    finally:
        close_old_connections()
