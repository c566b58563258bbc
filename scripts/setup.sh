#!/usr/bin/env bash
# Install what Slice Portal needs on a Debian 12 machine: system packages (as root),
# a virtual environment in .venv with the pinned Python packages.
# Usage: scripts/setup.sh [--dev]     (--dev adds test tools and the browser)
# APT_LOCK_TIMEOUT (seconds, default 600): how long to wait for another apt/dpkg to finish.
set -euo pipefail

# Host-side tools the lab and the provisioning engine run, Redis for the job queue.
APT_PACKAGES=(python3-venv openssh-client openssh-server openvswitch-switch qemu-system-x86 qemu-utils
  dnsmasq-base iptables iproute2 iputils-ping busybox-static ethtool tcpdump conntrack socat redis-server
  syslinux syslinux-common mtools  # syslinux + mtools: the lab's bootable qcow2 disk image
  dosfstools mmdebstrap openssl)  # cloud-init seeds (mkfs.vfat), the lab's Debian image, console password hashes

# A fresh machine often runs apt at boot (unattended-upgrades, cloud-init): wait for it, bounded.
APT_LOCK_TIMEOUT=${APT_LOCK_TIMEOUT:-600}
# The locks apt and dpkg take. APT_LOCK_FILES (space-separated) replaces the list: the tests hold a
# lock on a file of their own.
read -r -a APT_LOCKS <<<"${APT_LOCK_FILES:-/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock}"

# "PID (command)" of every process holding a lock on file $1, read from /proc/locks (only looking:
# probing by taking the lock could make the other apt fail). Covers fcntl (dpkg) and flock locks.
lock_holders() {
  local dev inode
  dev=$(stat -c %d "$1" 2>/dev/null) || return 0
  inode=$(stat -c %i "$1")
  # /proc/locks names the file MAJOR:MINOR:INODE (hex, hex, decimal), the device split as glibc does.
  local id
  id=$(printf '%02x:%02x:%s' $(((dev >> 8) & 0xfff | (dev >> 32) & ~0xfff)) $(((dev & 0xff) | (dev >> 12) & ~0xff)) "$inode")
  local pid
  # "N: TYPE ..." holds the lock, "N: -> TYPE ..." only waits for it.
  for pid in $(awk -v id="$id" '$2 != "->" && $6 == id { print $5 }' /proc/locks | sort -u); do
    echo "$pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo '?'))"
  done
}

# Wait until no other process holds an apt/dpkg lock, saying so; fail after APT_LOCK_TIMEOUT seconds.
wait_for_apt_locks() {
  local start=$SECONDS said=0 lock holders
  while :; do
    holders=""
    for lock in "${APT_LOCKS[@]}"; do
      holders=$(lock_holders "$lock")
      if [ -n "$holders" ]; then break; fi
    done
    if [ -z "$holders" ]; then return 0; fi
    local waited=$((SECONDS - start))
    # SECONDS counts whole seconds: "greater than" makes sure a full APT_LOCK_TIMEOUT has passed.
    if [ "$waited" -gt "$APT_LOCK_TIMEOUT" ]; then
      echo "!! $lock is still held by ${holders//$'\n'/, } after ${APT_LOCK_TIMEOUT}s;" \
        "run scripts/setup.sh again when it has finished (or raise APT_LOCK_TIMEOUT)" >&2
      return 1
    fi
    if [ $((waited / 30)) -ge "$said" ]; then  # now, then every 30 s
      echo "==> waiting for another apt/dpkg to finish: $lock is held by ${holders//$'\n'/, }" \
        "(${waited}s of at most ${APT_LOCK_TIMEOUT}s)" >&2  # stderr: apt-get's stdout may go to /dev/null
      said=$((waited / 30 + 1))
    fi
    sleep 1
  done
}

# Every apt-get call goes through here: wait for the locks first, and let apt itself wait for the
# dpkg lock too (DPkg::Lock::Timeout, apt >= 1.9.11) should another apt take it right after the check.
apt_get() {
  wait_for_apt_locks
  apt-get -o DPkg::Lock::Timeout="$APT_LOCK_TIMEOUT" "$@"
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  local dev=0
  [ "${1:-}" = "--dev" ] && dev=1
  [ "$dev" = 1 ] && APT_PACKAGES+=(chromium chromium-driver postgresql)

  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "==> apt-get install ${missing[*]}"
      apt_get update -qq
      DEBIAN_FRONTEND=noninteractive apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "!! not root: cannot install ${missing[*]} (the lab and some tests need them)" >&2
    fi
  fi

  local python=${PYTHON:-python3}
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$python" -m venv .venv
  fi
  local req=requirements.txt
  [ "$dev" = 1 ] && req=requirements-dev.txt
  echo "==> pip install -r $req"
  .venv/bin/pip install -q --disable-pip-version-check -r "$req"
}

# Sourced (the tests call the functions above), nothing runs.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
