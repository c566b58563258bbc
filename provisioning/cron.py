"""Scheduled jobs, on RQ's own cron scheduler: ``manage.py rqcron provisioning.cron``.

Registered: the reaper, the drift check (one job per enabled host, each bounded by
``PROVISIONING_CHECK_TIMEOUT``), history pruning and slice expiry. The scheduler process only
enqueues; the jobs run on the provisioning queue's RQ workers like any other job. Intervals come
from the settings.
"""

from django.conf import settings
from rq import cron

from . import jobs
from .queue import queue_name

# (job, interval setting, timeout in seconds, name): the scheduler only enqueues them.
SCHEDULE = [
    (jobs.reap_abandoned, settings.PROVISIONING_REAP_INTERVAL, 120, "reap-abandoned-deployments"),
    (jobs.check_all_hosts, settings.PROVISIONING_CHECK_INTERVAL, 60, "check-hosts-for-drift"),
    (jobs.prune_history, settings.PROVISIONING_PRUNE_INTERVAL, 600, "prune-deployment-history"),
    (jobs.expire_slices, settings.SLICE_EXPIRY_INTERVAL, 120, "destroy-expired-slices"),
]

for func, interval, timeout, name in SCHEDULE:
    cron.register(func, queue_name=queue_name(), interval=interval, job_timeout=timeout, result_ttl=3600, name=name)
