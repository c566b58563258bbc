"""Benchmark 5 — the REST API under load: gunicorn on 127.0.0.1, a keep-alive client in another process.

Data (scratch PostgreSQL database): one user owning 1000 slices — 999 of two
VMs each, linked (one VLAN each: the whole range fits 3,899 links) and one
ring of 50 VMs — and an API token. Served by
``gunicorn portal.wsgi`` (``--workers 2 --worker-class gthread --threads 4``,
one worker per core) on a free high port of 127.0.0.1, with the portal's own
settings (DEBUG off; ``DB_CONN_MAX_AGE`` as given, default 0 = the shipped
setting: a new database connection per request).

Load: this process (not the server's) with a pool of ``--concurrency`` threads,
each holding one keep-alive HTTP/1.1 connection and sending ``Authorization:
Token ...``. Each scenario gets a warm-up, then runs until ``--requests``
requests or ``--seconds`` seconds, whichever comes first. Scenarios:

- ``list 1000``: ``GET /api/slices/?limit=1000`` (all 1000 slices in one page);
- ``list page``: ``GET /api/slices/`` (the default page of 100);
- ``slice of 50 VMs``: ``GET /api/slices/{id}/`` (VMs, interfaces, links, pool);
- ``its deployment``: ``GET /api/deployments/{id}/`` of a finished dry-run deploy
  of that slice (plan and every step): what the designer reads once when it opens
  a job. Needs Redis (the job's network-node lock);
- ``its poll``: ``GET /api/deployments/{id}/?plan=false&steps_after=R`` with R ten
  revisions before the last (about ten steps changed since the previous poll):
  what the designer polls while a job runs (static/js/designer.js ``poll()``: only
  the deployment, never the slice, which it reads once when the job has ended).

Then ``DESIGNER POLL``: open designers watching that 50-VM job, simulated as the page
does it: each its own keep-alive connection, ``?plan=false&steps_after=`` the
``steps_revision`` of its previous answer, the next poll ``POLL_INTERVAL_MS`` (0.7 s)
after the answer came; meanwhile this process plays the job, writing ten step rows
with new revisions every 0.7 s in one UPDATE (the executor's burst write). For each
count of designers (``--designers``, 20 s each): polls/s, p50/p95 latency, errors;
a count is *sustained* when no poll failed and the p95 latency stays under the
interval (a change shows within two intervals). The line names the largest count
sustained. The client's threads share the two cores with the server: a lower bound.

Prints requests/s, p50/p95/p99 latency, response size and the SQL statements
one request runs (counted in-process with the same view and data).

Run:  .venv/bin/python bench/api_load.py   (PostgreSQL on localhost)
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import (
    REPO,
    database_url,
    log,
    machine,
    make_hosts,
    make_image,
    make_user,
    percentile,
    scratch_database,
    table,
)

SLICES = 1000
BIG_SLICE_VMS = 50
LINK_EVERY = 1  # every small slice has its link
POLL_CHANGES = 10  # revisions written between two designer polls (a step began or ended: ~10 in 0.7 s)
DESIGNERS = (50, 100, 150, 200)  # open designers tried by the DESIGNER POLL scenario
DESIGNER_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(slices: int, big: int) -> tuple[str, int]:
    """The user, its token, 999 small slices and the big one; returns (token, big slice id)."""
    from rest_framework.authtoken.models import Token

    from slices import services

    user = make_user("bench-api", max_vms=2 * slices + big)
    token = Token.objects.create(user=user).key
    started = time.perf_counter()
    big_slice = services.slice_from_template(owner=user, name="big", topology="ring", count=big)
    for i in range(slices - 1):
        s = services.slice_create(owner=user, name=f"s{i:04d}", description="two VMs")
        a = services.vm_create(slice_obj=s, name="a", data_interfaces_count=1)
        b = services.vm_create(slice_obj=s, name="b", data_interfaces_count=1)
        if i % LINK_EVERY == 0:
            services.link_connect(slice_obj=s, vm_a=a, vm_b=b)
        if (i + 1) % 250 == 0:
            log(f"{i + 1} slices designed ({time.perf_counter() - started:.0f} s)")
    return token, big_slice.pk, user


def dry_run_deployment(slice_id: int, user) -> tuple[int, int, int]:
    """A finished dry-run deploy of the slice (the engine's job, in-process); returns (id, steps, revision).

    Its detail (plan and every step) is what the designer reads when it opens the
    job; then, every 0.7 s while the job runs, the slice and the steps changed
    since its last read (static/js/designer.js, slices/views.py).
    """
    from django.conf import settings

    from provisioning import jobs, queue, services
    from provisioning.models import DeploymentStep
    from slices.models import Slice

    settings.PROVISIONING_QUEUE = "bench-api"
    make_hosts(2)
    deployment = services.deploy_request(slice_obj=Slice.objects.get(pk=slice_id), user=user, dry_run=True)
    status = jobs.run_deployment(deployment.pk)
    queue.provisioning_queue().empty()
    if status != "succeeded":
        raise RuntimeError(f"the dry-run deployment ended {status}")
    rows = DeploymentStep.objects.filter(deployment_id=deployment.pk)
    return deployment.pk, rows.count(), max(rows.values_list("revision", flat=True))


def sql_per_request(path: str, token: str) -> tuple[int, int]:
    """(SQL statements, response bytes) of one GET, run in-process through the same URL and view."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200, (path, response.status_code)
    return len(queries), len(response.content)


class Gunicorn:
    """gunicorn serving the portal on 127.0.0.1:port; stopped by its PID."""

    def __init__(self, url: str, port: int, workers: int, threads: int, conn_max_age: int, log_dir: Path) -> None:
        self.port = port
        self.log_path = log_dir / "gunicorn.log"
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DB_CONN_MAX_AGE": str(conn_max_age),
            "DEBUG": "0",
            "PYTHONUNBUFFERED": "1",
        }
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "portal.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--worker-class",
                "gthread",
                "--threads",
                str(threads),
                "--keep-alive",
                "75",
                "--backlog",
                "256",
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self, token: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.process.returncode}:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/api/me/", headers={"Authorization": f"Token {token}"})
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            time.sleep(0.3)
        raise RuntimeError("gunicorn did not answer in time")

    def stop(self) -> None:
        pid = self.process.pid
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # the master stops its workers
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)  # its own session: the master and its workers only
                self.process.wait(timeout=10)
        self._log.close()


def load(port: int, path: str, token: str, *, concurrency: int, requests: int, seconds: float, warmup: int) -> dict:
    """Run one scenario; returns rate, latencies, errors, bytes."""
    headers = {"Authorization": f"Token {token}", "Accept": "application/json", "Connection": "keep-alive"}
    lock = threading.Lock()
    state = {"sent": 0}
    latencies: list[float] = []
    errors: list[str] = []
    sizes: list[int] = []
    reconnects = [0]

    def take() -> bool:
        with lock:
            if state["sent"] >= requests or time.monotonic() >= state["deadline"]:
                return False
            state["sent"] += 1
            return True

    def worker(measured: bool, count: int | None) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        done = 0
        while (count is not None and done < count) or (count is None and take()):
            done += 1
            t0 = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - t0
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    reconnects[0] += 1
            except Exception as exc:
                conn.close()
                reconnects[0] += 1
                if measured:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if measured:
                with lock:
                    latencies.append(elapsed)
                    sizes.append(len(body))
        conn.close()

    warm = [threading.Thread(target=worker, args=(False, max(1, warmup // concurrency))) for _ in range(concurrency)]
    for t in warm:
        t.start()
    for t in warm:
        t.join()
    reconnects[0] = 0
    state["deadline"] = time.monotonic() + seconds
    threads = [threading.Thread(target=worker, args=(True, None)) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "wall": wall,
        "rps": len(latencies) / wall if wall else float("nan"),
        "p50": percentile(latencies, 50) * 1000,
        "p95": percentile(latencies, 95) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "bytes": int(sum(sizes) / len(sizes)) if sizes else 0,
        "reconnects": reconnects[0],
    }


class JobPlayer(threading.Thread):
    """Plays the running job: every ``interval`` s, ``changes`` step rows of the deployment get new revisions
    (one UPDATE, like the executor's burst write), cycling over its steps."""

    def __init__(self, deployment_id: int, interval: float, changes: int) -> None:
        super().__init__(daemon=True)
        self.deployment_id, self.interval, self.changes = deployment_id, interval, changes
        self.stop = threading.Event()
        self.writes = 0

    def run(self) -> None:
        from django.db import connection
        from django.db.models import Max

        from provisioning.models import DeploymentStep

        ids = list(
            DeploymentStep.objects.filter(deployment_id=self.deployment_id).order_by("seq").values_list("pk", flat=True)
        )
        revision = DeploymentStep.objects.filter(deployment_id=self.deployment_id).aggregate(m=Max("revision"))["m"]
        at = 0
        try:
            while not self.stop.wait(self.interval):
                rows = [ids[(at + i) % len(ids)] for i in range(self.changes)]
                at += self.changes
                with connection.cursor() as cursor:
                    cursor.execute(
                        "UPDATE provisioning_deploymentstep AS s SET revision = v.r "
                        "FROM unnest(%s::bigint[], %s::int[]) AS v (id, r) WHERE s.id = v.id",
                        [rows, list(range(revision + 1, revision + 1 + len(rows)))],
                    )
                revision += len(rows)
                self.writes += 1
        finally:
            connection.close()


def designers(port: int, deployment_id: int, token: str, *, count: int, seconds: float, interval: float) -> dict:
    """``count`` open designers following the job for ``seconds`` (static/js/designer.js ``poll()``).

    The pages are open already (their first read of the whole job, the ``its deployment`` row, is
    behind them): each polls from the job's revision now on.
    """
    from django.db import connection
    from django.db.models import Max

    from provisioning.models import DeploymentStep

    since = DeploymentStep.objects.filter(deployment_id=deployment_id).aggregate(m=Max("revision"))["m"]
    connection.close()
    headers = {"Authorization": f"Token {token}", "Accept": "application/json", "Connection": "keep-alive"}
    lock = threading.Lock()
    latencies: list[float] = []
    sizes: list[int] = []
    errors: list[str] = []
    changed = [0]
    start = threading.Barrier(count + 1)
    end = [0.0]

    def designer(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        revision = since
        path = f"/api/deployments/{deployment_id}/"
        start.wait()
        time.sleep(interval * index / count)  # pages opened at different moments
        while time.monotonic() < end[0]:
            t0 = time.perf_counter()
            try:
                conn.request("GET", f"{path}?plan=false&steps_after={revision}", headers=headers)
                response = conn.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - t0
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
                data = json.loads(body)
            except Exception as exc:
                conn.close()
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(interval)
                continue
            with lock:
                latencies.append(elapsed)
                sizes.append(len(body))
                changed[0] += len(data["steps"])
            revision = data["steps_revision"]
            time.sleep(interval)  # setTimeout(poll, pollMs) once the answer is in
        conn.close()

    player = JobPlayer(deployment_id, interval, POLL_CHANGES)
    threads = [threading.Thread(target=designer, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    end[0] = time.monotonic() + seconds + interval
    player.start()
    start.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    player.stop.set()
    player.join()
    p95 = percentile(latencies, 95) * 1000
    return {
        "designers": count,
        "polls": len(latencies),
        "rate": len(latencies) / wall if wall else float("nan"),
        "wanted": count / interval,
        "p50": percentile(latencies, 50) * 1000,
        "p95": p95,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "bytes": int(sum(sizes) / len(sizes)) if sizes else 0,
        "steps": changed[0] / len(latencies) if latencies else 0,
        "sustained": not errors and bool(latencies) and p95 < interval * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=SLICES)
    parser.add_argument("--big", type=int, default=BIG_SLICE_VMS, help="VMs of the big slice")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads (keep-alive connections)")
    parser.add_argument("--requests", type=int, default=400, help="at most this many requests per scenario")
    parser.add_argument("--seconds", type=float, default=30, help="at most this long per scenario")
    parser.add_argument("--warmup", type=int, default=8, help="requests per scenario before the clock starts")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--conn-max-age", type=int, default=0, help="DB_CONN_MAX_AGE of the server (0: shipped)")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the scratch database")
    parser.add_argument("--designers", type=int, nargs="*", default=DESIGNERS, help="open designers to try")
    parser.add_argument("--designer-seconds", type=float, default=DESIGNER_SECONDS, help="per count of designers")
    args = parser.parse_args()

    print("# Benchmark 5: REST API under load (gunicorn, PostgreSQL, keep-alive client on loopback)")
    print(f"# machine: {machine()}")
    with scratch_database("api", keep=args.keep_db) as name, tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        make_image()
        started = time.perf_counter()
        token, big_id, user = prepare(args.slices, args.big)
        log(f"{args.slices} slices designed in {time.perf_counter() - started:.0f} s")
        deployment_id, steps, revision = dry_run_deployment(big_id, user)
        since = max(0, revision - POLL_CHANGES)
        scenarios = [
            (f"list {args.slices}", f"/api/slices/?limit={args.slices}"),
            ("list page (100)", "/api/slices/"),
            (f"slice of {args.big} VMs", f"/api/slices/{big_id}/"),
            (f"its deployment ({steps} steps)", f"/api/deployments/{deployment_id}/"),
            (
                f"its poll (last {POLL_CHANGES} revisions)",
                f"/api/deployments/{deployment_id}/?plan=false&steps_after={since}",
            ),
        ]
        body = json.loads(
            __import__("django.test", fromlist=["Client"])
            .Client()
            .get(scenarios[0][1], HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Token {token}")
            .content
        )
        assert len(body["results"]) == args.slices, f"the list returned {len(body['results'])} slices"
        sql = {label: sql_per_request(path, token) for label, path in scenarios}
        from django.db import connections

        connections.close_all()
        port = free_port()
        server = Gunicorn(database_url(name), port, args.workers, args.threads, args.conn_max_age, Path(tmp))
        rows, rates = [], {}
        try:
            server.wait_ready(token)
            log(f"gunicorn pid {server.process.pid} on 127.0.0.1:{port}")
            for label, path in scenarios:
                r = load(
                    port,
                    path,
                    token,
                    concurrency=args.concurrency,
                    requests=args.requests,
                    seconds=args.seconds,
                    warmup=args.warmup,
                )
                rates[path] = r["rps"]
                rows.append(
                    [
                        label,
                        r["requests"],
                        r["errors"],
                        r["wall"],
                        r["rps"],
                        r["p50"],
                        r["p95"],
                        r["p99"],
                        f"{r['bytes'] / 1024:.0f} KiB",
                        sql[label][0],
                        r["reconnects"],
                    ]
                )
                log(f"{label}: {r['rps']:.1f} req/s, p50 {r['p50']:.0f} ms, p95 {r['p95']:.0f} ms")
                if r["first_error"]:
                    log(f"first error: {r['first_error']}")
            from slices.views import POLL_INTERVAL_MS

            watched = []
            for count in args.designers:
                r = designers(
                    port,
                    deployment_id,
                    token,
                    count=count,
                    seconds=args.designer_seconds,
                    interval=POLL_INTERVAL_MS / 1000,
                )
                watched.append(r)
                log(
                    f"{count} designers: {r['rate']:.0f} polls/s of {r['wanted']:.0f} wanted, "
                    f"p95 {r['p95']:.0f} ms, errors {r['errors']}"
                )
                if r["first_error"]:
                    log(f"first error: {r['first_error']}")
        finally:
            server.stop()
            log(f"gunicorn {server.process.pid} stopped")
        print()
        print(
            f"# server: gunicorn {args.workers} workers x {args.threads} threads (gthread), "
            f"DB_CONN_MAX_AGE={args.conn_max_age}; client: {args.concurrency} keep-alive connections, "
            f"at most {args.requests} requests or {args.seconds:.0f} s per scenario"
        )
        print()
        print(
            table(
                [
                    "scenario",
                    "requests",
                    "errors",
                    "wall s",
                    "req/s",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "body",
                    "SQL/request",
                    "reconnects",
                ],
                rows,
            )
        )
        if watched:
            print()
            print(
                f"Open designers watching the {args.big}-VM job ({steps} steps; {POLL_CHANGES} step rows change "
                f"every {POLL_INTERVAL_MS} ms), each polling {POLL_INTERVAL_MS} ms after its previous answer, "
                f"{args.designer_seconds:.0f} s per row:"
            )
            print()
            print(
                table(
                    [
                        "designers",
                        "polls",
                        "polls/s",
                        "wanted/s",
                        "p50 ms",
                        "p95 ms",
                        "errors",
                        "body",
                        "steps/poll",
                        "sustained",
                    ],
                    [
                        [
                            r["designers"],
                            r["polls"],
                            r["rate"],
                            r["wanted"],
                            r["p50"],
                            r["p95"],
                            r["errors"],
                            f"{r['bytes'] / 1024:.1f} KiB",
                            r["steps"],
                            "yes" if r["sustained"] else "no",
                        ]
                        for r in watched
                    ],
                )
            )
        # Capacity from the closed-loop poll rate: one designer costs 1/rate of the server per poll.
        dep_rps = rates[scenarios[4][1]]
        held = [r["designers"] for r in watched if r["sustained"]]
        print()
        print(
            f"DESIGNER POLL: a poll of the {args.big}-VM job (only the deployment, steps changed since the last "
            f"answer) costs {1000 / dep_rps:.1f} ms of this server: at one poll every {POLL_INTERVAL_MS} ms, "
            f"{POLL_INTERVAL_MS / 1000 * dep_rps:.0f} open designers by its rate; simulated, "
            + (
                f"{max(held)} sustained (largest count tried with p95 under {POLL_INTERVAL_MS} ms, no error)"
                if held
                else "none of the counts tried was sustained"
            )
        )


if __name__ == "__main__":
    main()
