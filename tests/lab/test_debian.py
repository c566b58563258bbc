"""A real Debian 12 cloud image in the lab: cloud-init seeds, the owner's SSH key, one default route at most.

Two Debian VMs linked across the two workers, and a third with internet linked to one of
them. Everything goes through the portal's API and RQ worker; the guests are observed the way
an operator reaches them: ``ssh`` with the owner's key from the network node's link namespace,
the exact command the VM card shows.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import pytest
from invoke.exceptions import CommandTimedOut
from rest_framework.test import APIClient

from inventory.models import Flavor, Host
from provisioning.lab import debian, inventory
from tests.lab import hoststate
from tests.lab.conftest import E2E_REDIS_DB, _redis_url
from tests.lab.driver import Portal, interface

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

BOOT_TIMEOUT = 1800  # seconds for three Debian guests to finish cloud-init under TCG on 2 shared (busy) cores
SSH_OPTIONS = (
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "ConnectTimeout=5",
    "-o",
    "LogLevel=ERROR",
)
TIMINGS: list[tuple[str, float]] = []  # (vm, seconds from the deploy request to the first SSH login)


@pytest.fixture
def debian_portal(e2e_worker, lab_session, settings, django_user_model, request, tmp_path):
    """A logged-in API user with an SSH key in the profile, the lab and its Debian image registered."""
    settings.REDIS_URL = _redis_url(E2E_REDIS_DB)
    settings.RQ_QUEUES = {name: {**conf, "URL": settings.REDIS_URL} for name, conf in settings.RQ_QUEUES.items()}
    lab_session.ensure_up()
    inventory.register_hosts(lab_session.paths, uplink=lab_session.uplink)
    inventory.register_image(lab_session.guest)
    built = debian.ensure_debian(lab_session.paths.images_dir)
    image = inventory.register_debian_image(built.path, default_user=built.default_user)
    flavor, _ = Flavor.objects.get_or_create(name="small", defaults={"vcpus": 1, "ram_mib": 512, "disk_gib": 2})
    user = django_user_model.objects.create_user(username="deb", password="deb-password-1")
    api = APIClient()
    api.force_authenticate(user)
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", 'o\'wner "$(id)": #x', "-f", str(key)], check=True
    )
    added = api.post("/api/me/keys/", {"public_key": key.with_suffix(".pub").read_text(), "name": "ci"}, format="json")
    assert added.status_code == 201, added.data
    driver = Portal(api, lab_session, e2e_worker, request.node.name, [])
    driver.slices = []
    driver.key, driver.fingerprint, driver.image, driver.flavor = key, added.data["fingerprint"], image, flavor
    yield driver
    for slice_id in driver.slices:
        data = api.get(f"/api/slices/{slice_id}/").data
        if data and data.get("status") not in ("draft", None):
            try:
                driver.wait(driver.request(slice_id, "destroy"))
            except AssertionError:
                pass


def debian_vm(portal: Portal, slice_id: int, name: str, *, host: str, data: int, internet: bool = False) -> dict:
    payload = {
        "slice": slice_id,
        "name": name,
        "image": portal.image.pk,
        "flavor": portal.flavor.pk,
        "data_interfaces_count": data,
        "internet_enabled": internet,
        "host": Host.objects.get(name=host).pk,
    }
    response = portal.api.post("/api/vms/", payload, format="json")
    assert response.status_code == 201, response.data
    return response.data


def ssh(portal: Portal, command_line: str, remote: str, *, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the VM card's ssh command (``ip netns exec NS ssh USER@IP``) on the network node, as an operator does.

    The DHCP namespaces are made inside the network node's SSH sessions: they exist only there,
    so the command runs in a session on that host (the key file is on the shared disk).
    """
    argv = command_line.split()
    assert argv[:3] == ["ip", "netns", "exec"] and argv[4] == "ssh", command_line
    full = [*argv[:5], "-i", str(portal.key), *SSH_OPTIONS, *argv[5:], remote]
    with portal.lab.connect("netnode") as connection:
        try:
            result = connection.run(shlex.join(full), hide=True, warn=True, timeout=timeout)
        except CommandTimedOut:
            return subprocess.CompletedProcess(full, 255, "", "timed out")
    return subprocess.CompletedProcess(full, result.exited, result.stdout, result.stderr)


def wait_for_cloud_init(portal: Portal, vms: dict[str, dict], deadline: float) -> dict[str, str]:
    """Poll each VM over SSH until cloud-init's boot-finished exists; return each VM's ssh command."""
    commands = {}
    for name, vm in vms.items():
        commands[name] = portal.get_vm(vm)["guest"]["ssh"]
        assert commands[name], f"{name}: the VM card has no ssh command"
    pending = set(vms)
    logged_in: set[str] = set()
    while pending:
        for name in sorted(pending):
            result = ssh(portal, commands[name], "test -f /var/lib/cloud/instance/boot-finished", timeout=30)
            if result.returncode in (0, 1) and name not in logged_in:  # 1: logged in, cloud-init not done yet
                logged_in.add(name)
                TIMINGS.append((name, time.time() - portal.deployed_at[vms[name]["slice"]]))
            if result.returncode == 0:
                pending.discard(name)
        if pending:
            if time.monotonic() > deadline:
                tails = {}
                for name in pending:
                    log = Path(portal.state_dir(vms[name])) / "vms" / f"vm{vms[name]['id']}" / "console.log"
                    tails[name] = "\n".join(log.read_text(errors="replace").splitlines()[-25:]) if log.exists() else ""
                raise AssertionError(f"cloud-init did not finish on {sorted(pending)}: {tails}")
            time.sleep(5)
    return commands


@pytest.mark.timeout(BOOT_TIMEOUT + 1200)  # + the image build on a fresh machine, deploy, redeploy, destroy
def test_debian_guests_get_keys_hostname_and_one_default_route_at_most(debian_portal, lab):
    portal = debian_portal
    before = hoststate.snapshot(lab)
    s = portal.slice("deb")
    portal.slices.append(s["id"])
    vm_a = debian_vm(portal, s["id"], "deba", host="worker1", data=1)
    vm_b = debian_vm(portal, s["id"], "debb", host="worker2", data=2)
    vm_c = debian_vm(portal, s["id"], "debc", host="worker1", data=1, internet=True)
    l_ab = portal.link(s["id"], vm_a, vm_b, "eth1", "eth1")
    l_cb = portal.link(s["id"], vm_c, vm_b, "eth1", "eth2")

    portal.run(s["id"], "deploy")
    vms = {"deba": vm_a, "debb": vm_b, "debc": vm_c}
    commands = wait_for_cloud_init(portal, vms, time.monotonic() + BOOT_TIMEOUT)

    for name, vm in vms.items():
        card = portal.get_vm(vm)["guest"]
        assert card["user"] == "debian"
        assert card["keys"] == [{"name": "ci", "fingerprint": portal.fingerprint}]
        result = ssh(portal, commands[name], "hostname; ip -4 route show default")
        assert result.returncode == 0, (name, result.stderr)
        hostname, *routes = result.stdout.strip().splitlines()
        assert hostname == name
        if name == "debc":  # internet: exactly one default route, via VLAN 400's gateway
            assert len(routes) == 1 and routes[0].startswith("default via 10.60.7.1 dev eth0"), routes
        else:  # links only: none (the links' DHCP option 3 is ignored)
            assert routes == [], (name, routes)

    # Peers ping over both links (worker1 <-> worker2 across the underlay).
    a_ip = interface(portal.get_vm(vm_a), "eth1")["ip_address"]
    c_ip = interface(portal.get_vm(vm_c), "eth1")["ip_address"]
    for peer in (a_ip, c_ip):
        result = ssh(portal, commands["debb"], f"ping -c 2 -W 3 {peer}")
        assert result.returncode == 0, (peer, result.stdout, result.stderr)
    assert l_ab["vlan"] != l_cb["vlan"]

    # A redeploy of the unchanged slice rebuilds no seed (the files are the very same).
    seed_files = [Path(portal.state_dir(vm)) / "vms" / f"vm{vm['id']}" / "seed.img" for vm in vms.values()]
    stamps = [(f.stat().st_mtime_ns, f.stat().st_ino) for f in seed_files]
    redeploy = portal.run(s["id"], "redeploy")
    seeds = [st for st in redeploy.get("steps", []) if st["description"].startswith("Cloud-init seed")]
    assert all(st["status"] == "skipped" for st in seeds), seeds
    assert [(f.stat().st_mtime_ns, f.stat().st_ino) for f in seed_files] == stamps

    portal.run(s["id"], "destroy")
    assert not any(f.exists() for f in seed_files)
    hoststate_problems = hoststate.diff(before, hoststate.snapshot(lab))
    assert not hoststate_problems, hoststate_problems
    print("\nDebian request-to-SSH-login (TCG):", ", ".join(f"{n} {t:.1f}s" for n, t in TIMINGS))
