"""Fixtures of the slicectl and generated-client tests: a dry-run RQ worker process and the inventory a deploy needs."""

import os
from pathlib import Path

import pytest

from inventory.models import Flavor, Host, Image
from tests.workers import JobWorker

REPO = Path(__file__).resolve().parents[2]
needs_postgres = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="the worker process needs a database it can open (PostgreSQL)",
)


@pytest.fixture
def inventory(transactional_db, django_db_serialized_rollback):
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
    started = JobWorker(
        settings, runner="dry-run", log_path=tmp_path / "worker.log", delay=0.01, fail=getattr(request, "param", "")
    )
    yield started
    started.stop()
