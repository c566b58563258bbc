"""Browser tests: Debian's headless Chromium driven by Playwright against pytest-django's live server.

Chromium is never downloaded (no ``playwright install``): the tests use
``/usr/bin/chromium`` (``apt-get install chromium``) and skip, saying so, when
it is absent. Screenshots go to ``artifacts/browser/``.
"""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from inventory.models import Flavor, Host, Image
from tests.workers import JobWorker, _database_url

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# The flags LAB-NOTES found to work headless as root (Playwright adds --headless and a fresh profile).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "browser"
# Seconds each dry-run step takes in the test worker, so that progress can be watched live.
DRY_RUN_STEP_DELAY = float(os.environ.get("BROWSER_DRY_RUN_STEP_DELAY", "0.04"))
PASSWORD = "correct-horse-battery"
TIMEOUT_MS = 20_000
# How many colours the noVNC canvas shows (sampled every 4th pixel): 1 is a blank screen.
CANVAS_COLOURS = """() => {
  const canvas = document.querySelector("#screen canvas");
  if (!canvas || !canvas.width || !canvas.height) return 0;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length; i += 16) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  return seen.size;
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def asgi_runserver(log_path: Path, **env: str) -> Iterator[str]:
    """``manage.py runserver`` (daphne: pages, static files, WebSockets; pytest-django's live server speaks
    no WebSocket) on the test database, with ``env`` added; yields its base URL, stops it by its PID."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "SECRET_KEY": django_settings.SECRET_KEY,
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--insecure"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert proc.poll() is None, log_path.read_text()
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium for the whole session (skips when the browser is not installed)."""
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which("chromium"):
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium chromium-driver")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:  # pragma: no cover - requirements-dev.txt pins it
        pytest.skip("playwright (Python) is not installed: pip install -r requirements-dev.txt")
    # Generous waits: the suite shares 2 cores with QEMU guests in CI.
    expect.set_options(timeout=TIMEOUT_MS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Playwright's sync API keeps an asyncio loop in this thread while the browser lives;
    # Django refuses ORM calls from a thread with a running loop unless told that the
    # calls are synchronous anyway (they are: the tests and fixtures call the ORM directly).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    manager = sync_playwright().start()
    try:
        browser = manager.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    finally:
        manager.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def inventory(transactional_db, django_db_serialized_rollback):
    """What a deploy needs in the database: a flavor, a default image, two workers and a network node.

    Transactional tests flush the tables between tests, so the data migrations'
    rows cannot be relied on: create them here.
    """
    flavor, _ = Flavor.objects.get_or_create(name="tiny", defaults={"vcpus": 1, "ram_mib": 96, "is_default": True})
    Flavor.objects.get_or_create(name="small", defaults={"vcpus": 1, "ram_mib": 256})
    image, _ = Image.objects.get_or_create(
        name="busybox",
        defaults={
            "kind": Image.Kind.KERNEL,
            "kernel_path": "/var/lib/slice-portal/images/vmlinuz",
            "initrd_path": "/var/lib/slice-portal/images/initrd.img",
            "is_default": True,
        },
    )
    hosts = [
        Host.objects.get_or_create(
            name=f"worker{i}",
            defaults={"role": Host.Role.WORKER, "management_address": f"192.0.2.{10 + i}", "vcpus": 4, "ram_mib": 4096},
        )[0]
        for i in (1, 2)
    ]
    hosts.append(
        Host.objects.get_or_create(
            name="netnode", defaults={"role": Host.Role.NETWORK, "management_address": "192.0.2.3"}
        )[0]
    )
    return {"flavor": flavor, "image": image, "hosts": hosts}


@pytest.fixture
def provisioning_worker(transactional_db, django_db_serialized_rollback, settings, request):
    """Deploy jobs run by a real RQ worker process with the dry-run runner, on a queue of this test's own.

    The worker reads the live server's test database. Parametrize indirectly with
    ``{"fail": "text"}`` to make the first step described with that text fail once
    (see ``rq_worker.py``), or with ``{"delay": seconds}`` to slow each step further.
    """
    options = getattr(request, "param", None) or {}
    delay = options.get("delay", DRY_RUN_STEP_DELAY)
    worker = JobWorker(settings, runner="dry-run", delay=delay, fail=options.get("fail", ""))
    yield worker
    worker.stop()


def lab_unavailable_reason() -> str | None:
    """Why the local lab cannot be used here (the lab tests' own check), or None."""
    if connection.vendor != "postgresql":
        return "the lab journey needs PostgreSQL (the worker process reads the test database)"
    try:
        from tests.lab.conftest import lab_unavailable_reason as reason
    except Exception as exc:  # the lab's helpers moved: say so rather than guess
        return f"the lab's test helpers cannot be imported: {exc}"
    return reason()


@pytest.fixture(params=["dry-run", pytest.param("lab", marks=pytest.mark.lab)])
def deploy_env(request, transactional_db, django_db_serialized_rollback, settings):
    """Where deploys go: fake hosts and the dry-run runner, or the local lab over SSH (root only).

    The lab variant brings the lab up when it is not (and takes it down again
    afterwards), registers its hosts and guest image in the test database, and runs
    the jobs with the Fabric runner: real OVS, TAPs, QEMU guests and DHCP leases.
    """
    if request.param == "dry-run":
        inventory = request.getfixturevalue("inventory")
        worker = JobWorker(settings, runner="dry-run", delay=DRY_RUN_STEP_DELAY)
        yield {"kind": "dry-run", "inventory": inventory, "worker": worker}
        worker.stop()
        return
    if os.environ.get("BROWSER_LAB", "1") == "0":
        pytest.skip("BROWSER_LAB=0: the lab journey is switched off")
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    from provisioning.lab import cluster, guest, health, inventory, system
    from provisioning.lab.topology import DEFAULT_UPLINK, LabPaths, lab_namespaces

    paths = LabPaths(Path(settings.LAB_DIR).resolve())
    was_up = all(h.healthy for h in health.status(paths))
    if not was_up and any(system.namespace_exists(ns) for ns in lab_namespaces()):
        # Namespaces are global: never tear down a lab that another run (another LAB_DIR) is using.
        pytest.skip(f"the lab's namespaces exist but are not a healthy lab of {paths.root}: another run uses them")
    if not was_up:
        cluster.up(paths, uplink=DEFAULT_UPLINK)
    try:
        image = guest.ensure_guest(paths.images_dir)
        Flavor.objects.get_or_create(name="tiny", defaults={"vcpus": 1, "ram_mib": 96, "is_default": True})
        hosts = inventory.register_hosts(paths, uplink=DEFAULT_UPLINK)
        inventory.register_image(image)
        env = {"LAB_DIR": str(paths.root), "PROVISIONING_KNOWN_HOSTS": str(paths.known_hosts)}
        worker = JobWorker(settings, runner="fabric", env=env)
        try:
            yield {"kind": "lab", "hosts": hosts, "worker": worker}
        finally:
            worker.stop()
    finally:
        if not was_up:
            cluster.down(paths)


@pytest.fixture
def ui_user(transactional_db, django_db_serialized_rollback, django_user_model):
    return django_user_model.objects.create_user(username="ada", password=PASSWORD)


class Console:
    """Console errors and uncaught exceptions seen by a page."""

    def __init__(self):
        self.errors: list[str] = []
        self.allowed: list[re.Pattern] = []

    def allow(self, pattern: str) -> None:
        """Accept errors matching ``pattern`` (e.g. the network log line of a request the test makes fail)."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture
def page(chromium, live_server, transactional_db, django_db_serialized_rollback, request):
    """A fresh browser page at 1280x800 on the live server; fails the test on console errors.

    Set up after the database fixture so that it is torn down before the tables are
    flushed: a request still in flight would otherwise deadlock with the flush.
    """
    context = chromium.new_context(
        viewport={"width": 1280, "height": 800}, base_url=live_server.url, accept_downloads=True
    )
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    console = Console()
    pg.on("console", lambda msg: msg.type == "error" and console.errors.append(f"console: {msg.text} @ {msg.location}"))
    pg.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
    pg.console = console
    yield pg
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        shot(pg, f"FAILED-{request.node.name}")
        print("browser console errors:", *console.errors, sep="\n  ")
    pg.goto("about:blank")  # stop the page's timers and requests before the flush
    context.close()
    if not failed:
        assert console.unexpected() == [], "errors in the browser console"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def shot(pg, name: str, full_page: bool = False) -> Path:
    """Save a screenshot as a test artifact (artifacts/browser/NAME.png)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=full_page)
    return path


def login(pg, user, password: str = PASSWORD, expect_success: bool = True) -> None:
    """Log in through the form, typing like a user (Enter submits)."""
    pg.goto("/login/")
    pg.get_by_label("Username").fill(user.username)
    pg.get_by_label("Password").fill(password)
    pg.keyboard.press("Enter")
    if expect_success:
        pg.wait_for_url(re.compile(r"/$"))
        wait_ready(pg)
    else:
        pg.wait_for_load_state()


def wait_ready(pg) -> None:
    """Wait until the page's script has wired its buttons and loaded its data."""
    pg.wait_for_selector("body[data-ready]", state="attached")
