"""slicectl against a live server: real HTTP, a real RQ worker process, the dry-run runner.

The portal runs in pytest-django's live server (a thread of this process, the
test database); jobs run in a worker subprocess (``tests.browser.rq_worker``) on
a queue of this test's own with the dry-run runner; slicectl runs as a
subprocess (``python -m slicectl``), so only HTTP joins them.
"""

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from provisioning.models import Deployment
from slices.models import VM, ApiToken, Slice

from .conftest import REPO, needs_postgres

PASSWORD = "pw-slicectl-1"

# serialized_rollback: like every transactional test here, so its flush does not re-create the content
# types that the next serialized test restores (a duplicate key at its setup).
pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), needs_postgres]

DOC = {
    "name": "lab",
    "vms": [{"name": "r1"}, {"name": "r2"}, {"name": "r3"}],
    "links": [["r1:eth1", "r2:eth1"], ["r2:eth2", "r3:eth1"]],
}


@pytest.fixture
def cli(live_server, tmp_path, django_user_model, inventory):
    """Run slicectl as a subprocess against the live server; logged in with ``slicectl login``."""
    django_user_model.objects.create_user(username="neteng", password=PASSWORD)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SLICECTL_")},
        "SLICECTL_CONFIG": str(tmp_path / "config" / "slicectl.json"),
        "NO_COLOR": "1",
    }

    def run(*args: str, stdin: str | None = None, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "slicectl", *args],
            cwd=REPO,
            env={**env, **(extra_env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    r = run("--url", live_server.url, "login", "-u", "neteng", "--password-stdin", stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    config = Path(env["SLICECTL_CONFIG"])
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text())["url"] == live_server.url
    # A named token (revocable by its owner at /api/auth/tokens/).
    token = ApiToken.objects.get(user__username="neteng")
    assert token.name == f"slicectl on {socket.gethostname()}"[:64]
    assert json.loads(config.read_text())["token"] == token.key
    return run


def test_apply_twice_edit_destroy_through_the_cli(cli, worker, tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(DOC))
    r = cli("apply", "-f", str(path), "--wait")
    assert r.returncode == 0, r.stderr
    assert "slice lab is created: 3 VMs, 2 links" in r.stderr
    assert "+ link r1:eth1 <-> r2:eth1" in r.stderr
    assert "deploy lab: succeeded 100%" in r.stderr and "netnode " in r.stderr  # the progress line, per host
    s = Slice.objects.get(name="lab")
    assert s.status == "active"
    before = {vm.name: (vm.pk, vm.host_id, vm.status) for vm in s.vms.all()}
    assert {status for _pk, _host, status in before.values()} == {"running"}
    jobs = Deployment.objects.count()

    # the same file again: nothing changes, nothing runs
    r = cli("apply", "-f", str(path), "--wait")
    assert r.returncode == 0, r.stderr
    assert "slice lab is unchanged" in r.stderr
    assert Deployment.objects.count() == jobs

    # edited: one link removed, one VM added (its NIC and r1's second NIC inferred from the links)
    edited = {
        "name": "lab",
        "vms": [*DOC["vms"], {"name": "r4"}],
        "links": [["r1:eth1", "r2:eth1"], ["r1:eth2", "r4:eth1"]],
    }
    path.write_text(yaml.safe_dump(edited))
    r = cli("apply", "-f", str(path), "--dry-run")
    assert r.returncode == 0 and "would be changed" in r.stderr
    assert not VM.objects.filter(name="r4").exists()
    r = cli("apply", "-f", str(path), "--wait")
    assert r.returncode == 0, r.stderr
    for line in ("+ vm r4", "~ vm r1: data_interfaces_count 1 -> 2", "+ link r1:eth2 <-> r4:eth1"):
        assert line in r.stderr
    assert "- link r2:eth2 <-> r3:eth1" in r.stderr
    assert "redeploy lab: succeeded 100%" in r.stderr
    latest = Deployment.objects.order_by("-pk").first()
    assert latest.kind == "redeploy" and latest.status == "succeeded"
    after = {vm.name: (vm.pk, vm.host_id, vm.status) for vm in Slice.objects.get(name="lab").vms.all()}
    for name in ("r2", "r3"):  # untouched VMs: the same rows on the same hosts, running
        assert after[name] == before[name]
    assert after["r4"][2] == "running"

    # reading it back
    listed = json.loads(cli("get", "-o", "json").stdout)
    assert [(s["name"], s["status"], s["vm_count"], s["link_count"]) for s in listed] == [("lab", "active", 4, 2)]
    assert cli("get").stdout.splitlines()[0].split() == ["NAME", "STATUS", "VMS", "LINKS", "UPDATED"]
    detail = json.loads(cli("inspect", "lab", "-o", "json").stdout)
    assert {vm["name"]: vm["host_name"] is not None for vm in detail["vms"]} == dict.fromkeys(after, True)
    table = cli("inspect", "lab").stdout
    assert "VLAN" in table and "r4" in table
    exported = yaml.safe_load(cli("export", "lab").stdout)
    assert sorted(exported["links"]) == sorted(edited["links"])
    assert "# redeploy of lab" in cli("plan", "lab").stdout

    # destroy and delete
    r = cli("destroy", "lab", "--wait")
    assert r.returncode == 0, r.stderr
    assert "destroy lab: succeeded" in r.stderr
    assert Slice.objects.get(name="lab").status == "draft"
    assert cli("delete", "lab").returncode == 0
    assert not Slice.objects.exists()


@pytest.mark.parametrize("worker", ["Start QEMU for r2"], indirect=True)
def test_a_failing_step_exits_1_with_its_output(cli, worker, tmp_path):
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(DOC))
    r = cli("apply", "-f", str(path), "--no-deploy")
    assert r.returncode == 0, r.stderr
    r = cli("deploy", "lab", "--wait")
    assert r.returncode == 1, r.stderr
    assert "deploy of lab failed" in r.stderr
    assert "failed (exit code 1): Start QEMU for r2" in r.stderr
    assert "| ioctl(TUNSETIFF): Device or resource busy" in r.stderr  # the failing step's output


def test_exit_codes(cli, live_server, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: lab\nvms: [{name: r1}]\nlinks: [[r1:eth1, zz:eth1]]\n")
    r = cli("apply", "-f", str(bad))
    assert r.returncode == 3 and "links[0][1]: No VM named 'zz'" in r.stderr
    assert cli("apply", "-f", str(tmp_path / "missing.yaml")).returncode == 2
    assert cli("inspect", "nope").returncode == 4
    assert cli("get", extra_env={"SLICECTL_TOKEN": "0" * 40}).returncode == 5
    assert cli("--url", "http://127.0.0.1:9", "get").returncode == 6
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(DOC))
    assert cli("apply", "-f", str(ok), "--no-deploy").returncode == 0
    r = cli("console", "lab", "r1")  # a draft VM: refused before connecting (the console: test_console_cli.py)
    assert r.returncode == 3 and "VM r1 is designed, not running: no console." in r.stderr
    assert cli("console", "lab", "r1", "--timeout", "0").returncode == 2
    assert cli("console", "lab", "r9").returncode == 4
    assert cli("frobnicate").returncode == 2
    r = cli("completion", "bash")
    assert r.returncode == 0 and "complete -F _slicectl slicectl" in r.stdout
    assert subprocess.run(["bash", "-n"], input=r.stdout, text=True).returncode == 0
    assert cli("get", "-o", "name").stdout.split() == ["lab"]
    for command in ("apply", "deploy", "get", "inspect", "export", "delete", "plan", "console", "login"):
        r = cli(command, "--help")
        assert r.returncode == 0 and "usage: slicectl" in r.stdout
