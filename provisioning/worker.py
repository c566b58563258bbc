"""The RQ worker class of ``manage.py rqworker`` (``settings.RQ["WORKER_CLASS"]``).

RQ's default worker forks a work horse per job, so nothing a job opens outlives it. This one
runs each job in the worker process itself (RQ's ``SimpleWorker``: the job timeout is still
enforced, by SIGALRM in the job's thread) and keeps the jobs' SSH connections between them
(:mod:`provisioning.sshpool`), closing them when the worker stops. The jobs already start and end
with ``close_old_connections()``, so no database connection is carried from one job into the next.
"""

from __future__ import annotations

from rq import SimpleWorker

from . import sshpool


class Worker(SimpleWorker):
    """A non-forking RQ worker whose jobs share one SSH connection per host (:mod:`provisioning.sshpool`)."""

    def work(self, *args, **kwargs):
        sshpool.enable()
        try:
            return super().work(*args, **kwargs)
        finally:
            sshpool.disable()
