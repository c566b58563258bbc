"""Drive the portal end to end the way a user's automation does: its REST API, then look at the guests.

Everything goes through the portal's own API (slices, VMs, links, deploy,
redeploy, destroy, deployments); the deploy jobs run on the real RQ worker of
the ``e2e_worker`` fixture. Only the observation of the guests uses the lab's
own tools: their serial consoles, and the lab hosts' namespaces.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from inventory.models import Host
from provisioning.lab import console, system

DEPLOY_TIMEOUT = 240  # seconds for one deployment job (TCG guests on 2 cores)
LEASE_TIMEOUT = 120  # seconds for a guest to report a lease
LEASE_RE = (  # a complete line only (one still being written could end in a cut-off uptime)
    r"SP: DHCP {nic} ok ip=(?P<ip>[0-9.]+) mask=(?P<mask>\d+) router=(?P<router>\S+) .*uptime=(?P<up>[0-9.]+)\r?\n"
)


@dataclass
class Lease:
    ip: str
    mask: int
    router: str
    uptime: float


class Portal:
    """A user of the portal's API, with helpers to read what the guests report."""

    def __init__(self, api, lab, worker, test_name: str, timings: list) -> None:
        self.api = api
        self.lab = lab
        self.worker = worker
        self.test_name = test_name
        self.timings = timings
        self.deployed_at: dict[int, float] = {}  # slice id -> when its last deploy was requested (epoch)
        self.last_deployment: dict[int, int] = {}  # slice id -> its last deployment's id

    # --- design ---------------------------------------------------------------------------

    def _ok(self, response, *codes: int):
        assert response.status_code in codes, f"{response.status_code}: {getattr(response, 'data', response)}"
        return response.data

    def slice(self, name: str) -> dict:
        return self._ok(self.api.post("/api/slices/", {"name": name}, format="json"), 201)

    def vm(
        self, slice_id: int, name: str, *, host: str, data: int = 1, internet: bool = False, image: int | None = None
    ) -> dict:
        payload = {
            "slice": slice_id,
            "name": name,
            "data_interfaces_count": data,
            "internet_enabled": internet,
            "host": Host.objects.get(name=host).pk,
        }
        if image is not None:
            payload["image"] = image
        return self._ok(self.api.post("/api/vms/", payload, format="json"), 201)

    def link(self, slice_id: int, vm_a: dict, vm_b: dict, iface_a: str | None = None, iface_b: str | None = None):
        payload = {"slice": slice_id, "vm_a": vm_a["id"], "vm_b": vm_b["id"]}
        if iface_a:
            payload["iface_a"] = iface_a
        if iface_b:
            payload["iface_b"] = iface_b
        return self._ok(self.api.post("/api/links/", payload, format="json"), 201)

    def delete_vm(self, vm: dict) -> None:
        self._ok(self.api.delete(f"/api/vms/{vm['id']}/"), 204)

    def get_vm(self, vm: dict) -> dict:
        return self._ok(self.api.get(f"/api/vms/{vm['id']}/"), 200)

    def get_slice(self, slice_id: int) -> dict:
        return self._ok(self.api.get(f"/api/slices/{slice_id}/"), 200)

    # --- deployments -----------------------------------------------------------------------

    def request(self, slice_id: int, action: str) -> dict:
        """POST /api/slices/{id}/{action}/ (deploy, redeploy, destroy); returns the deployment."""
        if action != "destroy":
            self.deployed_at[slice_id] = time.time()
        deployment = self._ok(self.api.post(f"/api/slices/{slice_id}/{action}/", {}, format="json"), 202)
        self.last_deployment[slice_id] = deployment["id"]
        return deployment

    def deployment_failed(self, slice_id: int) -> str | None:
        """The error of the slice's last deployment if it failed, else None (not failed, or none yet)."""
        deployment_id = self.last_deployment.get(slice_id)
        if deployment_id is None:
            return None
        data = self._ok(self.api.get(f"/api/deployments/{deployment_id}/"), 200)
        if data["status"] != "failed":
            return None
        steps = [f"{s['host']}: {s['description']}" for s in data.get("steps", []) if s["status"] == "failed"]
        return f"deployment {deployment_id} failed: {data.get('error')} (failed steps: {steps or 'none'})"

    def wait(self, deployment: dict, *, timeout: float = DEPLOY_TIMEOUT) -> dict:
        """Poll GET /api/deployments/{id}/ until the job ends; return the deployment with its steps."""
        deadline = time.monotonic() + timeout
        while True:
            data = self._ok(self.api.get(f"/api/deployments/{deployment['id']}/"), 200)
            if data["status"] in ("succeeded", "failed"):
                return data
            assert self.worker.alive(), f"the RQ worker died:\n{self.worker.log_tail()}"
            assert time.monotonic() < deadline, (
                f"deployment {deployment['id']} still {data['status']} after {timeout}s "
                f"({data.get('progress')} %); worker log:\n{self.worker.log_tail()}"
            )
            time.sleep(0.25)

    def run(self, slice_id: int, action: str, *, expect: str = "succeeded") -> dict:
        done = self.wait(self.request(slice_id, action))
        if expect:
            failed = [s for s in done.get("steps", []) if s.get("status") == "failed"]
            assert done["status"] == expect, (
                f"{action} of slice {slice_id}: {done['status']}: {done.get('error')}\nfailed steps: {failed}"
            )
        return done

    # --- guests -----------------------------------------------------------------------------------

    def state_dir(self, vm: dict) -> str:
        return Host.objects.get(name=self.get_vm(vm)["host_name"]).state_dir

    def lease(self, vm: dict, nic: str, *, subnet: str | None = None, timeout: float = LEASE_TIMEOUT) -> Lease:
        """Wait for the guest's ``SP: DHCP <nic> ok`` line (in ``subnet`` if given); record boot-to-lease.

        Stops at once, with the deployment's error, when the slice's last deployment failed:
        its guest may never have started.
        """
        state_dir = self.state_dir(vm)
        regex = re.compile(LEASE_RE.format(nic=nic), re.MULTILINE)
        network = ipaddress.IPv4Network(subnet) if subnet else None
        deadline = time.monotonic() + timeout
        next_check = 0.0
        while True:
            matches = [
                m
                for m in regex.finditer(console.read_log(state_dir, vm["id"]))
                if network is None or ipaddress.IPv4Address(m["ip"]) in network
            ]
            if matches:
                break
            if time.monotonic() >= next_check:  # once a second: an API request each time
                if error := self.deployment_failed(vm["slice"]):
                    raise AssertionError(f"{vm['name']}: no DHCP lease on {nic}: {error}")
                next_check = time.monotonic() + 1
            if time.monotonic() > deadline:
                tail = "\n".join(console.read_log(state_dir, vm["id"]).splitlines()[-20:])
                raise AssertionError(f"{vm['name']}: no DHCP lease on {nic} after {timeout}s; console:\n{tail}")
            time.sleep(0.2)
        match = matches[-1]
        lease = Lease(match["ip"], int(match["mask"]), match["router"], float(match["up"]))
        # Request-to-lease: when QEMU started (from /proc) plus the guest's uptime at its lease.
        started = process_start_time(self.qemu_pid(vm, state_dir))
        requested = self.deployed_at.get(vm["slice"])
        since = started + lease.uptime - requested if started and requested else float("nan")
        if not any(row[:4] == (self.test_name, vm["name"], nic, lease.uptime) for row in self.timings):
            self.timings.append((self.test_name, vm["name"], nic, lease.uptime, since))
        return lease

    def sh(self, vm: dict, command: str, *, timeout: float = 30) -> console.ConsoleResult:
        """Run a command on the guest's serial console."""
        return console.run_command(console.console_socket(self.state_dir(vm), vm["id"]), command, timeout=timeout)

    def pings(self, vm: dict, address: str, *, tries: int = 3) -> bool:
        """True when the guest gets an echo reply from ``address`` (a few attempts: ARP, TCG)."""
        for _ in range(tries):
            try:
                if self.sh(vm, f"ping -c 2 -W 2 {address}", timeout=20).ok:
                    return True
            except console.ConsoleError:
                continue  # a console that did not answer in time: ask again
        return False

    def never_pings(self, vm: dict, address: str, *, extra: str = "") -> bool:
        """True when ``ping`` from the guest gets no reply at all."""
        return not self.sh(vm, f"ping -c 2 -W 1 {extra} {address}", timeout=20).ok

    def qemu_pid(self, vm: dict, state_dir: str | None = None) -> int | None:
        path = console.vm_dir(state_dir or self.state_dir(vm), vm["id"]) / "qemu.pid"
        return system.pid_from_file(path, must_mention=str(path))


def in_range(address: str, subnet: str) -> bool:
    """Inside the DHCP range .10-.250 of ``subnet``."""
    net = ipaddress.IPv4Network(subnet)
    offset = int(ipaddress.IPv4Address(address)) - int(net.network_address)
    return 10 <= offset <= 250


def interface(vm_data: dict, name: str) -> dict:
    return next(i for i in vm_data["interfaces"] if i["name"] == name)


def rx_packets(result_output: str) -> int:
    match = re.search(r"(\d+)", result_output)
    assert match, result_output
    return int(match.group(1))


def process_start_time(pid: int | None) -> float | None:
    """When a process started (epoch seconds), from /proc (start ticks since boot vs. uptime now)."""
    if not pid:
        return None
    try:
        start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return time.time() - (uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
