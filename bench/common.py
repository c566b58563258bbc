"""Shared helpers of the benchmarks: scratch PostgreSQL databases, Django set-up, slices, statistics.

Every benchmark works in a database of its own that it creates and drops
(``bench_slice_portal_<name>`` on ``BENCH_PG_HOST:BENCH_PG_PORT`` as
``BENCH_PG_USER``, default ``127.0.0.1:5432`` / ``postgres`` with trust auth),
never in the test database or the portal's own one.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/x.py` as well as `python -m bench.x`
    sys.path.insert(0, str(REPO))

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
DB_PREFIX = "bench_slice_portal"
REDIS_BASE = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
# Redis database of the benchmarks' queues and locks (the lab e2e tests use 15, the portal 0).
BENCH_REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "13"))
LOCK_PREFIX = "bench-slice-portal"
# Appended to every scratch database name, so that two people benchmarking on one PostgreSQL never collide.
DB_TAG = "".join(c for c in os.environ.get("BENCH_DB_TAG", "") if c.isalnum() or c == "_")


# --- scratch databases ---------------------------------------------------------------------------


def db_name(suffix: str) -> str:
    return f"{DB_PREFIX}_{suffix}{'_' + DB_TAG if DB_TAG else ''}"


def database_url(name: str) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def redis_url(db: int = BENCH_REDIS_DB) -> str:
    return f"{REDIS_BASE.rstrip('/')}/{db}"


def _admin_execute(sql: str) -> None:
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql)


def _check_name(name: str) -> str:
    if not name.startswith(DB_PREFIX) or not name.replace("_", "").isalnum():
        raise ValueError(f"refusing to touch database {name!r}: not a benchmark scratch database")
    return name


def create_database(name: str) -> None:
    """(Re)create an empty scratch database (a leftover of a crashed run is dropped first)."""
    _check_name(name)
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin_execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    _check_name(name)
    with contextlib.suppress(Exception):
        from django.db import connections

        connections.close_all()
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _sigterm_to_exit(signum, frame):  # finally-blocks (drop the db, stop processes) still run
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def scratch_database(suffix: str, *, keep: bool = False) -> Iterator[str]:
    """Create ``bench_slice_portal_<suffix>``, point Django at it, migrate; drop it at the end."""
    signal.signal(signal.SIGTERM, _sigterm_to_exit)
    name = db_name(suffix)
    create_database(name)
    try:
        setup_django(database_url(name))
        from django.core.management import call_command

        started = time.perf_counter()
        call_command("migrate", verbosity=0, interactive=False)
        log(f"scratch database {name} created and migrated in {time.perf_counter() - started:.1f} s")
        yield name
    finally:
        if keep:
            log(f"scratch database {name} kept (--keep-db)")
        else:
            drop_database(name)
            log(f"scratch database {name} dropped")


def setup_django(url: str, **env: str) -> None:
    """Configure Django for a benchmark process: the scratch database, the benchmark Redis db."""
    os.environ["DATABASE_URL"] = url
    os.environ["REDIS_URL"] = redis_url()  # never the portal's own queues
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.update(env)
    import django
    from django.conf import settings

    if not settings.configured or not getattr(setup_django, "done", False):
        django.setup()
        setup_django.done = True  # type: ignore[attr-defined]
    # Benchmark users never log in with a password: skip PBKDF2's deliberate slowness.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PROVISIONING_LOCK_PREFIX = LOCK_PREFIX


# --- inventory and slices --------------------------------------------------------------------------


def make_user(username: str, *, max_vms: int | None = None, staff: bool = False):
    """A user (no usable password) with a raised VM quota when asked."""
    from django.contrib.auth import get_user_model

    from slices.models import UserQuota

    user = get_user_model().objects.create_user(username=username, password=None, is_staff=staff)
    if max_vms is not None:
        UserQuota.objects.create(user=user, max_vms=max_vms, max_vcpus=max_vms * 4, max_ram_mib=max_vms * 4096)
    return user


def make_image():
    """A kernel-kind image (paths are never opened by a dry run or by the API)."""
    from inventory.models import Image

    return Image.objects.create(
        name="bench-kernel",
        kind=Image.Kind.KERNEL,
        kernel_path="/boot/vmlinuz",
        initrd_path="/boot/initrd.img",
        kernel_args="console=ttyS0",
        is_default=True,
    )


def make_hosts(workers: int, *, vcpus: int = 256, ram_mib: int = 1 << 20):
    """``workers`` compute workers and one network node (TEST-NET-1 addresses: never contacted)."""
    from inventory.models import Host

    rows = [
        Host.objects.create(
            name=f"bench-w{i:02d}",
            role=Host.Role.WORKER,
            management_address=f"192.0.2.{10 + i}",
            vcpus=vcpus,
            ram_mib=ram_mib,
            state_dir="/var/lib/slice-portal",
            accel=Host.Accel.TCG,  # no KVM probe in a dry run's plan
        )
        for i in range(1, workers + 1)
    ]
    rows.append(
        Host.objects.create(
            name="bench-netnode", role=Host.Role.NETWORK, management_address="192.0.2.9", vcpus=1, ram_mib=512
        )
    )
    return rows


def ring_slice(owner, name: str, count: int, *, hosts: Sequence | None = None, internet: bool = False):
    """A ring of ``count`` VMs built through the services (vm_create, link_connect).

    ``count`` 2 is a single link (a ring of two would join the same VMs twice,
    which the design rules refuse). ``hosts`` pins VM i to ``hosts[i % len]``.
    """
    from slices import services

    slice_obj = services.slice_create(owner=owner, name=name)
    data = 1 if count == 2 else 2
    vms = [
        services.vm_create(
            slice_obj=slice_obj,
            name=f"vm{i + 1}",
            data_interfaces_count=data,
            internet_enabled=internet,
            host=hosts[i % len(hosts)] if hosts else None,
        )
        for i in range(count)
    ]
    pairs = [(0, 1)] if count == 2 else [(i, (i + 1) % count) for i in range(count)]
    for a, b in pairs:
        services.link_connect(slice_obj=slice_obj, vm_a=vms[a], vm_b=vms[b])
    return slice_obj


# --- statistics and output -------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least squares ``y = a + b x``: returns (a, b)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


def power_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log y against log x: y ~ x^k."""
    return linear_fit([math.log(x) for x in xs], [math.log(y) for y in ys])[1]


def growth_label(exponent: float) -> str:
    """linear / sub-linear / super-linear from an exponent (a 15 % band counts as linear)."""
    if exponent < 0.15:
        return "constant (sub-linear)"
    if exponent < 0.85:
        return "sub-linear"
    if exponent <= 1.15:
        return "linear"
    return "super-linear"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (also readable as plain text)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"
    return str(value)


def machine() -> str:
    """One line describing the machine: cores, RAM, kernel, CPU model, KVM."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        ram = f"{kib / 1024 / 1024:.1f} GiB"
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} cores, {ram} RAM, kernel {platform.release()}, {cpu}, "
        f"/dev/kvm {'present' if Path('/dev/kvm').exists() else 'absent'}, load {load:.2f}"
    )


def git_revision() -> str:
    result = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "unknown"
