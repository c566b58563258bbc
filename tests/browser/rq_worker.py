"""A real RQ worker process for the browser tests: ``python -m tests.browser.rq_worker QUEUE DELAY [FAIL]``.

It runs the portal's own job (``provisioning.jobs.run_deployment``) against the
test database (``DATABASE_URL``) with the dry-run runner
(``PROVISIONING_RUNNER=dry-run``). The dry-run runner answers instantly; DELAY
seconds per step slow it down so the browser can watch the progress move, as it
does on real hosts. FAIL (a text) makes the first step whose description
contains it fail once, with an exit code and stderr, and stops that host's script
there, as the Fabric runner does.
"""

import os
import sys
import time

FAILED_STDERR = "ioctl(TUNSETIFF): Device or resource busy"


def patch_dry_run(delay: float, fail: str = "") -> None:
    """Make every dry-run step take ``delay`` seconds; fail the first step described with ``fail``."""
    from dataclasses import replace

    from provisioning import runners

    original = runners.DryRunRunner._run_host
    state = {"failed": False}

    def run_host(self, host, commands, emit):
        stopped = {"yes": False}

        def patched_emit(event):
            if stopped["yes"] and event.kind != "host":
                return  # the host's script stopped at the failure: later steps never run
            if event.kind == "ended":
                time.sleep(delay)
                if fail and not state["failed"] and fail in commands[event.index].description:
                    state["failed"] = stopped["yes"] = True
                    event = replace(event, status="failed", exit_code=1, output=FAILED_STDERR, duration=delay)
            elif event.kind == "host" and stopped["yes"]:
                event = replace(event, ok=False)
            emit(event)

        return original(self, host, commands, patched_emit)

    runners.DryRunRunner._run_host = run_host


def main(queue_name: str, delay: float, fail: str = "") -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    import django_rq
    from rq import Queue, SimpleWorker

    patch_dry_run(delay, fail)
    connection = django_rq.get_connection("provisioning")
    # SimpleWorker runs jobs in this process, so the slowed runner above is the one used.
    worker = SimpleWorker([Queue(queue_name, connection=connection)], connection=connection)
    worker.work(logging_level="WARNING")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0, sys.argv[3] if len(sys.argv) > 3 else "")
