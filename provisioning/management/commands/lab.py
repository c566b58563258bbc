"""``manage.py lab up | down | status | reboot | image | console``: the local lab (see docs/lab.md)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from provisioning.lab import cluster, console, debian, guest, health, inventory, reboot
from provisioning.lab.hostkeys import untrusted_hint
from provisioning.lab.system import LabCommandError
from provisioning.lab.topology import HOSTS, LabPaths
from slices.models import VM


def lab_paths() -> LabPaths:
    return LabPaths(Path(settings.LAB_DIR).resolve())


class Command(BaseCommand):
    help = "The local lab: worker1, worker2 and netnode as network namespaces with their own OVS and sshd."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        up = sub.add_parser("up", help="(Re)build the lab and register its hosts and guest image.")
        up.add_argument("--no-image", action="store_true", help="Do not build or register the guest image.")
        force_help = "Take over a lab that another LAB_DIR runs on this machine."
        up.add_argument("--force", action="store_true", help=force_help)
        down = sub.add_parser("down", help="Remove everything the lab made; disable its Host rows.")
        down.add_argument("--force", action="store_true", help=force_help)
        sub.add_parser("status", help="Report each host's health; exit 1 when anything is unhealthy.")
        reboot_parser = sub.add_parser(
            "reboot",
            help="Do to one lab host what a reboot does (guests, dnsmasq, its DHCP namespaces, TAPs and "
            "iptables rules gone; OVS from its database and sshd back); exit 1 when it is not healthy after.",
        )
        reboot_parser.add_argument("host", choices=[h.name for h in HOSTS])
        image = sub.add_parser("image", help="Build (if needed) and register a guest image.")
        image.add_argument(
            "which",
            nargs="?",
            choices=["busybox", "debian"],
            default="busybox",
            help="busybox: the default lab guest (kernel + initramfs); debian: a Debian 12 cloud image "
            "with cloud-init (mmdebstrap from the package mirror, ~10 min once, cached).",
        )
        image.add_argument("--refresh", action="store_true", help="Fetch the current kernel if not cached yet.")
        image.add_argument("--rebuild", action="store_true", help="Rebuild the initramfs (and the disk).")
        image.add_argument(
            "--disk", action="store_true", help="Also build a bootable qcow2 of the guest and register it (kind disk)."
        )
        console = sub.add_parser("console", help="Run a command on a lab guest's serial console.")
        console.add_argument("vm_id", type=int)
        console.add_argument("cmd", help="A shell command line, e.g. 'ip -4 addr'.")
        console.add_argument("--timeout", type=float, default=30)

    def handle(self, *args, action: str, **options):
        if action != "console" and os.geteuid() != 0:
            raise CommandError("the lab needs root (network namespaces, OVS, sshd, QEMU)")
        try:
            return getattr(self, f"do_{action}")(**options)
        except LabCommandError as exc:
            raise CommandError(str(exc)) from exc

    def do_up(self, *, no_image: bool = False, force: bool = False, **_):
        paths = lab_paths()
        uplink = inventory.network_node_uplink()
        timings = cluster.up(paths, uplink=uplink, force=force)
        inventory.register_hosts(paths, uplink=uplink)
        for host in HOSTS:
            self.stdout.write(
                f"{host.name:8} {host.role:8} {host.management_address}  state_dir={paths.state_dir(host.name)}"
            )
        self.stdout.write(
            f"lab up in {timings['total']:.2f}s (clean-up {timings['clean']:.2f}s, build {timings['build']:.2f}s); "
            f"host keys in {paths.known_hosts}; ssh key {paths.client_key}"
        )
        self.warn_untrusted(paths)
        if not no_image:
            self.do_image()

    def do_down(self, *, force: bool = False, **_):
        start = time.monotonic()
        removed = cluster.down(lab_paths(), force=force)
        disabled = inventory.disable_hosts()
        for item in removed:
            self.stdout.write(f"removed {item}")
        self.stdout.write(f"lab down in {time.monotonic() - start:.2f}s; {disabled} Host row(s) disabled")

    def do_status(self, **_):
        paths = lab_paths()
        report = health.status(paths)
        for host in report:
            self.write_health(host)
        self.warn_untrusted(paths)
        if not all(h.healthy for h in report):
            raise CommandError("the lab is not healthy (`manage.py lab up` rebuilds it)")

    def do_reboot(self, *, host: str, **_):
        paths = lab_paths()
        report = reboot.reboot(paths, host)
        self.stdout.write(report.summary())
        after = health.host_status(paths, host)
        self.write_health(after)
        if not after.healthy:
            raise CommandError(f"{host} is not healthy after the reboot")

    def write_health(self, host: health.HostHealth) -> None:
        checks = "  ".join(f"{name}={'ok' if good else 'FAIL'}" for name, good in host.checks.items())
        self.stdout.write(f"{host.name:9} {'healthy  ' if host.healthy else 'UNHEALTHY'}  {checks}")
        for note in host.notes:
            self.stdout.write(f"          {note}")

    def warn_untrusted(self, paths: LabPaths) -> None:
        """Say exactly what to change when this checkout's settings do not trust the lab's host keys."""
        if hint := untrusted_hint(paths, settings.PROVISIONING_KNOWN_HOSTS):
            self.stderr.write(self.style.WARNING(f"!! {hint}"))

    def do_image(
        self, *, which: str = "busybox", refresh: bool = False, rebuild: bool = False, disk: bool = False, **_
    ):
        start = time.monotonic()
        images_dir = lab_paths().images_dir
        if which == "debian":
            built = debian.ensure_debian(images_dir, rebuild=rebuild)
            row = inventory.register_debian_image(built.path, default_user=built.default_user)
            size = built.path.stat().st_size / 2**20
            self.stdout.write(
                f"image {row.name} (disk, cloud-init, user {row.default_user}) ready in "
                f"{time.monotonic() - start:.2f}s: {built.path} ({size:.0f} MiB)"
            )
            return
        image = guest.ensure_guest(images_dir, refresh=refresh, rebuild=rebuild)
        row = inventory.register_image(image)
        self.stdout.write(
            f"image {row.name} (default, kernel {image.kernel_version}) ready in {time.monotonic() - start:.2f}s: "
            f"{image.kernel_path} + {image.initrd_path}"
        )
        if disk:
            disk_path = guest.build_disk(images_dir, image, rebuild=rebuild)
            row = inventory.register_disk_image(disk_path)
            self.stdout.write(f"image {row.name} (kind disk): {disk_path}")

    def do_console(self, *, vm_id: int, cmd: str, timeout: float = 30, **_):
        vm = VM.objects.select_related("host").filter(pk=vm_id).first()
        if vm is None or vm.host is None:
            raise CommandError(f"VM {vm_id} does not exist or is not placed on a host")
        try:
            result = console.run_command(console.console_socket(vm.host.state_dir, vm_id), cmd, timeout=timeout)
        except console.ConsoleError as exc:
            raise CommandError(str(exc)) from exc
        if result.output:
            self.stdout.write(result.output)
        if not result.ok:
            raise CommandError(f"exit code {result.exit_code}")
