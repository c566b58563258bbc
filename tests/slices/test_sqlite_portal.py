"""The zero-set-up portal (SQLite, the README's run command) under concurrent writes.

The designer saves every node's position at once after a layout: on SQLite those
writes meet in the database lock. A real server on a real SQLite file, hit by
parallel requests, must answer every one of them (they wait their turn).
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SETUP = """
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from inventory.models import Image
from slices import services
Image.objects.create(name="base", disk_path="/var/lib/images/base.qcow2", is_default=True)
user = User.objects.create_user("sqlite-user", password="x-sqlite-pass-1")
s = services.slice_from_template(owner=user, name="ring", topology="ring", count=12)
print(Token.objects.create(user=user).key, *s.vms.values_list("pk", flat=True))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(port: int, token: str, method: str, path: str, body: dict | None = None) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError:
        return 0  # not listening yet


def test_parallel_writes_on_sqlite_all_succeed(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    manage = [sys.executable, "manage.py"]
    migrate = subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert migrate.returncode == 0, migrate.stderr
    made = subprocess.run([*manage, "shell", "-c", SETUP], cwd=ROOT, env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    token, *vm_ids = made.stdout.strip().splitlines()[-1].split()  # after the shell's own banner
    port = _free_port()
    server = subprocess.Popen(
        [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while _request(port, token, "GET", "/api/me/") != 200:
            assert server.poll() is None and time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        with ThreadPoolExecutor(len(vm_ids)) as pool:
            codes = list(
                pool.map(
                    lambda i: _request(port, token, "PATCH", f"/api/vms/{vm_ids[i]}/", {"x": 10 * i, "y": 5 * i}),
                    range(len(vm_ids)),
                )
            )
        assert codes == [200] * len(vm_ids), codes
    finally:
        server.terminate()
        log = server.communicate(timeout=15)[1]
    assert "database is locked" not in log, log[-3000:]
