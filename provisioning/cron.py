"""Scheduled jobs, on RQ's own cron scheduler: ``manage.py rqcron provisioning.cron``.

Registered: the reaper, and the drift check (one job per enabled host, each bounded by
``PROVISIONING_CHECK_TIMEOUT``). The scheduler process only enqueues; the jobs run on the provisioning queue's
RQ workers like any other job. Intervals come from the settings.
"""

from django.conf import settings
from rq import cron

from . import jobs
from .queue import queue_name

cron.register(
    jobs.reap_abandoned,
    queue_name=queue_name(),
    interval=settings.PROVISIONING_REAP_INTERVAL,
    job_timeout=120,
    result_ttl=3600,
    name="reap-abandoned-deployments",
)

cron.register(
    jobs.check_all_hosts,
    queue_name=queue_name(),
    interval=settings.PROVISIONING_CHECK_INTERVAL,
    job_timeout=60,
    result_ttl=3600,
    name="check-hosts-for-drift",
)

cron.register(
    jobs.prune_history,
    queue_name=queue_name(),
    interval=settings.PROVISIONING_PRUNE_INTERVAL,
    job_timeout=600,
    result_ttl=3600,
    name="prune-deployment-history",
)

cron.register(
    jobs.expire_slices,
    queue_name=queue_name(),
    interval=settings.SLICE_EXPIRY_INTERVAL,
    job_timeout=120,
    result_ttl=3600,
    name="destroy-expired-slices",
)
