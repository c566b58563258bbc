"""RQ jobs: thin. Load by id, run, report what happened."""

from __future__ import annotations

from django.db import close_old_connections

from . import executor, expiry, reaper, retention


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


def prune_history() -> str:
    """The scheduled pruning (provisioning.cron): old deployments and their steps, as provisioning.retention says."""
    close_old_connections()
    try:
        pruned = retention.prune_history()
        return f"{pruned.deployments} deployment(s) and {pruned.steps} step row(s) pruned"
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
