#!/usr/bin/env bash
# Install what Slice Portal needs on a Debian 12 machine: system packages (as root),
# a virtual environment in .venv with the pinned Python packages.
# Usage: scripts/setup.sh [--dev]     (--dev adds test tools and the browser)
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

# Host-side tools the lab and the provisioning engine run, Redis for the job queue.
APT_PACKAGES=(python3-venv openssh-client openssh-server openvswitch-switch qemu-system-x86 qemu-utils
  dnsmasq-base iptables iproute2 iputils-ping busybox-static ethtool tcpdump conntrack socat redis-server
  syslinux syslinux-common mtools)  # syslinux + mtools: the lab's bootable qcow2 disk image
[ "$DEV" = 1 ] && APT_PACKAGES+=(chromium chromium-driver postgresql)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "!! not root: cannot install ${missing[*]} (the lab and some tests need them)" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
REQ=requirements.txt
[ "$DEV" = 1 ] && REQ=requirements-dev.txt
echo "==> pip install -r $REQ"
.venv/bin/pip install -q --disable-pip-version-check -r "$REQ"
