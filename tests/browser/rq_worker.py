"""A real RQ worker process for the browser tests: ``python -m tests.browser.rq_worker QUEUE DELAY``.

It runs the portal's own job (``provisioning.jobs.run_deployment``) against the
test database (``DATABASE_URL``) with the dry-run runner
(``PROVISIONING_RUNNER=dry-run``). The dry-run runner answers instantly; DELAY
seconds per step slow it down so the browser can watch the progress move, as it
does on real hosts.
"""

import os
import sys
import time


def slow_down_dry_run(delay: float) -> None:
    """Make every dry-run step take ``delay`` seconds (it stays "running" meanwhile)."""
    from provisioning import runners

    original = runners.DryRunRunner._run_host

    def run_host(self, host, commands, emit):
        def slow_emit(event):
            if event.kind == "ended":
                time.sleep(delay)
            emit(event)

        return original(self, host, commands, slow_emit)

    runners.DryRunRunner._run_host = run_host


def main(queue_name: str, delay: float) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    import django_rq
    from rq import Queue, SimpleWorker

    if delay > 0:
        slow_down_dry_run(delay)
    connection = django_rq.get_connection("provisioning")
    # SimpleWorker runs jobs in this process, so the slowed runner above is the one used.
    worker = SimpleWorker([Queue(queue_name, connection=connection)], connection=connection)
    worker.work(logging_level="WARNING")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
