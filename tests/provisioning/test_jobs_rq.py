"""Deploy and destroy jobs on a real RQ worker process against the real Redis and PostgreSQL.

The request goes through the API (the job is enqueued when the transaction
commits), a separate worker process (tests/provisioning/rq_worker.py) runs it
over real SSH to the local sshd with echo stand-ins for the host commands, and
this test reads the step rows from its own connection while the job runs.
Each test has its own queue and worker name, removed from Redis afterwards.
"""

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection
from rest_framework.test import APIClient

from inventory.models import Flavor, Host, Image
from provisioning import jobs, queue
from provisioning.models import Deployment, DeploymentStep
from slices import services as slice_services
from slices.models import VM, Slice

from .conftest import needs_sshd

pytestmark = [needs_sshd, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def queue_name(rq_queue):
    return rq_queue.name


class Worker:
    """The worker subprocess; stopped by its PID."""

    def __init__(self, queue: str, known_hosts: str, **env):
        self.name = f"sp-test-worker-{uuid.uuid4().hex[:8]}"
        db = connection.settings_dict
        url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        self.env = {
            **os.environ,
            "DATABASE_URL": url,
            "SP_QUEUE": queue,
            "SP_WORKER_NAME": self.name,
            "SP_KNOWN_HOSTS": known_hosts,
            **{k: str(v) for k, v in env.items()},
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Worker":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.provisioning.rq_worker"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait(self, timeout=120) -> str:
        out, _ = self.proc.communicate(timeout=timeout)
        return out.decode(errors="replace")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def forget(self, redis) -> None:
        """Remove a killed worker's registration from Redis."""
        redis.delete(f"rq:worker:{self.name}")
        for key in redis.scan_iter(match="rq:workers*"):
            if redis.type(key) == b"set":
                redis.srem(key, f"rq:worker:{self.name}")


@pytest.fixture
def workers(queue_name, sshd):
    started = []

    def start(**env):
        worker = Worker(queue_name, str(sshd.known_hosts), **env).start()
        started.append(worker)
        return worker

    yield start
    redis = queue.provisioning_queue().connection
    for worker in started:
        worker.kill()
        worker.forget(redis)  # before the queue's keys go (rq_queue's teardown runs after this)


@pytest.fixture
def cluster(ssh_hosts, user):
    """A slice of 4 VMs, linked in a line, ready to deploy; its own flavor and image (transactional test)."""
    flavor, _ = Flavor.objects.get_or_create(name="tiny", defaults={"vcpus": 1, "ram_mib": 128})
    image = Image.objects.create(
        name="rq-kernel", kind="kernel", kernel_path="/boot/vmlinuz", kernel_args="console=ttyS0"
    )
    s = slice_services.slice_create(owner=user, name="rq")
    vms = [
        slice_services.vm_create(slice_obj=s, name=f"vm{i}", flavor=flavor, image=image, data_interfaces_count=2)
        for i in range(1, 5)
    ]
    for a, b in itertools.pairwise(vms):
        slice_services.link_connect(slice_obj=s, vm_a=a, vm_b=b)
    client = APIClient()
    client.force_authenticate(user)
    return s, client


def wait_for(predicate, timeout=60, every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def test_deploy_and_destroy_jobs_on_a_real_worker_with_live_steps(cluster, workers):
    s, client = cluster
    r = client.post(f"/api/slices/{s.pk}/deploy/")
    assert r.status_code == 202
    dep_id = r.data["id"]
    dep = Deployment.objects.get(pk=dep_id)
    assert queue.provisioning_queue().fetch_job(dep.job_id) is not None  # enqueued at commit
    worker = workers(SP_SLEEP="0.15")
    # live: a step is running while later ones are still pending, and progress moves
    seen_running = wait_for(
        lambda: DeploymentStep.objects.filter(deployment_id=dep_id, status="running").first(), timeout=60
    )
    assert DeploymentStep.objects.filter(deployment_id=dep_id, status="pending", seq__gt=seen_running.seq).exists()
    progress = [Deployment.objects.get(pk=dep_id).progress]
    wait_for(lambda: Deployment.objects.get(pk=dep_id).progress > progress[0] or None, timeout=60)
    s.refresh_from_db()
    assert s.status == "deploying"
    body = client.get(f"/api/deployments/{dep_id}/").json()
    assert body["status"] == "running" and body["heartbeat"] is not None
    assert any(step["status"] == "ok" for step in body["steps"])
    # poll as the designer does (only what changed since the last answer): it ends with the full record
    merged, revision, polls = {st["seq"]: st for st in body["steps"]}, body["steps_revision"], 0
    while body["status"] in ("queued", "running"):
        time.sleep(0.05)
        body = client.get(f"/api/deployments/{dep_id}/?plan=false&steps_after={revision}").json()
        assert body["plan"] is None and all(st["revision"] > revision for st in body["steps"])
        merged.update({st["seq"]: st for st in body["steps"]})
        revision, polls = body["steps_revision"], polls + 1
    output = worker.wait()
    full = client.get(f"/api/deployments/{dep_id}/").json()
    assert polls > 3 and full["steps_revision"] == revision
    assert [merged[seq] for seq in sorted(merged)] == full["steps"]
    dep.refresh_from_db()
    assert dep.status == "succeeded", (dep.error, output)
    assert set(DeploymentStep.objects.filter(deployment=dep).values_list("status", flat=True)) == {"ok"}
    assert queue.provisioning_queue().fetch_job(dep.job_id).get_status() == "finished"
    s.refresh_from_db()
    assert s.status == "active"
    assert dep.stats["netnode"]["connections"] == 1
    # destroy on another worker run
    r = client.post(f"/api/slices/{s.pk}/destroy/")
    assert r.status_code == 202
    output = workers().wait()
    destroy = Deployment.objects.get(pk=r.data["id"])
    assert destroy.status == "succeeded", (destroy.error, output)
    s.refresh_from_db()
    assert s.status == "draft"
    assert set(VM.objects.filter(slice=s).values_list("status", flat=True)) == {"designed"}


def test_failing_step_on_a_real_worker(cluster, workers):
    s, client = cluster
    dep_id = client.post(f"/api/slices/{s.pk}/deploy/").data["id"]
    workers(SP_FAIL="Start QEMU for vm3").wait()
    dep = Deployment.objects.get(pk=dep_id)
    assert dep.status == "failed" and "step 'Start QEMU for vm3" in dep.error and "exit code 3" in dep.error
    s.refresh_from_db()
    assert s.status == "failed"
    # the job itself ended normally (the failure is the deployment's, recorded)
    assert queue.provisioning_queue().fetch_job(dep.job_id).get_status() == "finished"
    # retry through the API works at once
    assert client.post(f"/api/slices/{s.pk}/deploy/").status_code == 202


def test_killed_worker_leaves_no_slice_stuck(cluster, workers):
    s, client = cluster
    dep_id = client.post(f"/api/slices/{s.pk}/deploy/").data["id"]
    worker = workers(SP_SLEEP="1")
    running = wait_for(lambda: DeploymentStep.objects.filter(deployment_id=dep_id, status="running").first())
    worker.kill()  # SIGKILL mid-job, by the PID we started
    dep = Deployment.objects.get(pk=dep_id)
    assert dep.status == "running"  # nobody told the database yet
    s.refresh_from_db()
    assert s.status == "deploying"
    # a read never writes; the scheduled reaper (what provisioning.cron enqueues) notices
    assert client.get(f"/api/deployments/{dep_id}/").json()["status"] == "running"
    assert jobs.reap_abandoned() == "1 abandoned deployment(s) failed"
    body = client.get(f"/api/deployments/{dep_id}/").json()
    assert body["status"] == "failed"
    assert body["error"].startswith("abandoned: the worker process running it (")
    assert f":{worker.proc.pid}) is gone" in body["error"]
    assert running.description in body["error"]
    s.refresh_from_db()
    assert s.status == "failed"
    assert DeploymentStep.objects.filter(deployment_id=dep_id, status="running").count() == 0
    # and the slice can be deployed again (and a second RQ delivery of the old job would do nothing);
    # the network-node lock the killed job held expires by itself (short TTL, renewed while alive)
    r = client.post(f"/api/slices/{s.pk}/deploy/")
    assert r.status_code == 202
    started = time.monotonic()
    output = workers().wait()
    assert time.monotonic() - started < 60
    assert Deployment.objects.get(pk=r.data["id"]).status == "succeeded", output
    assert Host.objects.filter(role="worker").count() == 2
    assert Slice.objects.get(pk=s.pk).status == "active"
