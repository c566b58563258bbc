"""Fixtures of the slicectl and generated-client tests: a dry-run RQ worker process and the inventory a deploy needs."""

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from inventory.models import Flavor, Host, Image

REPO = Path(__file__).resolve().parents[2]
needs_postgres = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="the worker process needs a database it can open (PostgreSQL)",
)


def _database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "postgres", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class DryRunWorker:
    """``python -m tests.browser.rq_worker QUEUE DELAY [FAIL]`` on a queue of its own; stopped by its PID."""

    def __init__(self, settings, log: Path, fail: str = ""):
        self.queue = f"slicectl-tests-{uuid.uuid4().hex[:10]}"
        settings.PROVISIONING_RUNNER = "dry-run"
        settings.PROVISIONING_QUEUE = self.queue
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DATABASE_URL": _database_url(),
            "PROVISIONING_RUNNER": "dry-run",
            "REDIS_URL": settings.REDIS_URL,
        }
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        with open(log, "a") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.browser.rq_worker", self.queue, "0.01", fail],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        import django_rq
        from rq import Queue

        Queue(self.queue, connection=django_rq.get_connection("provisioning")).delete(delete_jobs=True)


@pytest.fixture
def inventory(transactional_db):
    Flavor.objects.get_or_create(name="tiny", defaults={"vcpus": 1, "ram_mib": 96, "is_default": True})
    Image.objects.get_or_create(
        name="busybox", defaults={"kind": Image.Kind.KERNEL, "kernel_path": "/k", "is_default": True}
    )
    for i in (1, 2):
        Host.objects.get_or_create(
            name=f"worker{i}",
            defaults={"role": Host.Role.WORKER, "management_address": f"192.0.2.{10 + i}", "vcpus": 8, "ram_mib": 8192},
        )
    Host.objects.get_or_create(name="netnode", defaults={"role": Host.Role.NETWORK, "management_address": "192.0.2.3"})


@pytest.fixture
def worker(settings, tmp_path, request, inventory):
    started = DryRunWorker(settings, tmp_path / "worker.log", fail=getattr(request, "param", ""))
    yield started
    started.stop()
