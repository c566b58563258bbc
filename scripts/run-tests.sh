#!/usr/bin/env bash
# Set everything up and run the whole test suite on PostgreSQL and Redis.
# As root the lab tests (real OVS, namespaces, sshd, QEMU) run too; otherwise they skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
scripts/services.sh --postgres
export DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/test}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
# The tests' own lab (never the one a running portal uses under /var/lib/slice-portal-lab).
export LAB_DIR=${TEST_LAB_DIR:-/tmp/slice-portal-lab-tests}
mkdir -p artifacts
echo "==> ruff"
.venv/bin/ruff check .
# The tests run as a locked-down production host would: the lab's state dir only its owner may enter
# (mode 0700, like `mktemp -d`) and umask 077, so no daemon that drops root (dnsmasq) can rely on
# reading what the portal writes (issue 16 #17). After setup and services, which need neither.
mkdir -p "$LAB_DIR"
chmod 0700 "$LAB_DIR"
umask 077
echo "==> pytest (LAB_DIR=$LAB_DIR mode 0700, umask 077)"
exec .venv/bin/pytest "$@"
