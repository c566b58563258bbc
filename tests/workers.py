"""A real RQ worker process for tests that drive the portal over HTTP (browser, slicectl).

``python -m tests.browser.rq_worker QUEUE DELAY [FAIL]`` on a queue of its own, reading the test
database; stopped by its PID, its queue deleted with its jobs.
"""

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

from django.db import connection

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts" / "browser"


def _database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "postgres", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class JobWorker:
    """A real RQ worker process (``rq_worker.py``) on a queue of its own, started and stopped by PID."""

    def __init__(
        self,
        settings,
        *,
        runner: str,
        log_path: Path = ARTIFACTS / "rq-worker.log",
        delay: float = 0.0,
        fail: str = "",
        env: dict | None = None,
    ):
        self.queue = f"browser-tests-{uuid.uuid4().hex[:10]}"
        settings.PROVISIONING_RUNNER = runner
        settings.PROVISIONING_QUEUE = self.queue
        self.process = None
        if connection.vendor != "postgresql":
            # An in-memory SQLite test database cannot be opened by another process: run jobs inline.
            settings.RQ_QUEUES = {**settings.RQ_QUEUES, self.queue: {"URL": settings.REDIS_URL, "ASYNC": False}}
            return
        full_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DATABASE_URL": _database_url(),
            "PROVISIONING_RUNNER": runner,
            "REDIS_URL": settings.REDIS_URL,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        full_env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.browser.rq_worker", self.queue, str(delay), fail],
                cwd=REPO,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        import django_rq
        from rq import Queue

        Queue(self.queue, connection=django_rq.get_connection("provisioning")).delete(delete_jobs=True)
