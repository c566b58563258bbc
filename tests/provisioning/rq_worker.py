"""A real RQ worker process for the job tests: ``python -m tests.provisioning.rq_worker``.

It is an ordinary SimpleWorker (the job runs in this process, so killing it
kills the job) on the test's own queue, with the test database and the test
sshd's known-hosts file, and the plans swapped for echo stand-ins (see
echo_plans.py) so that nothing touches the machine's network. Settings come
from the environment the test passes:

SP_QUEUE, SP_WORKER_NAME, SP_KNOWN_HOSTS, SP_LEASE_WAIT, SP_FAIL, SP_SLEEP, SP_BURST
"""

import os
import sys


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django.conf import settings

    settings.PROVISIONING_QUEUE = os.environ["SP_QUEUE"]
    settings.PROVISIONING_KNOWN_HOSTS = os.environ["SP_KNOWN_HOSTS"]
    settings.PROVISIONING_LEASE_WAIT = int(os.environ.get("SP_LEASE_WAIT", "1"))
    settings.PROVISIONING_RUNNER = "fabric"
    settings.PROVISIONING_LOCK_PREFIX = os.environ["SP_QUEUE"]  # tests never wait on a real job's lock
    settings.PROVISIONING_LOCK_TTL = int(os.environ.get("SP_LOCK_TTL", "3"))

    from rq import SimpleWorker

    from provisioning.queue import provisioning_queue
    from tests.provisioning import echo_plans

    echo_plans.install(fail=os.environ.get("SP_FAIL", ""), sleep=float(os.environ.get("SP_SLEEP", "0")))
    queue = provisioning_queue()
    worker = SimpleWorker([queue], connection=queue.connection, name=os.environ["SP_WORKER_NAME"])
    worker.work(burst=os.environ.get("SP_BURST", "1") == "1", with_scheduler=False, logging_level="WARNING")
    return 0


if __name__ == "__main__":
    sys.exit(main())
