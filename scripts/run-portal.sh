#!/usr/bin/env bash
# Set everything up and run the portal on http://127.0.0.1:8000/ :
# SQLite, a local Redis, an RQ worker, an admin user and — as root — the local lab.
# ADMIN_PASSWORD sets the admin password (default: a generated one, printed below).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/services.sh
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
PY=.venv/bin/python

$PY manage.py migrate --noinput
$PY manage.py ensure_admin --username "${ADMIN_USER:-admin}"

if [ "$(id -u)" = 0 ]; then
  echo "==> bringing up the local lab (worker1, worker2, netnode)"
  $PY manage.py lab up
else
  echo "!! not root: the local lab (namespaces, OVS, QEMU) cannot be built; the portal runs alone."
  echo "   Design works; Deploy shows the plan with the dry-run runner (PROVISIONING_RUNNER=dry-run)."
  export PROVISIONING_RUNNER=dry-run
fi

mkdir -p var
$PY manage.py rqworker provisioning default > var/rqworker.log 2>&1 &
WORKER=$!
# RQ's own cron scheduler enqueues the scheduled jobs (provisioning.cron): the reaper that fails
# deployments whose worker died, every PROVISIONING_REAP_INTERVAL seconds; the RQ worker runs them.
$PY manage.py rqcron provisioning.cron > var/rqcron.log 2>&1 &
CRON=$!
trap 'kill $WORKER $CRON 2>/dev/null || true' EXIT
echo "==> RQ worker pid $WORKER (log: var/rqworker.log)"
echo "==> http://127.0.0.1:${PORT:-8000}/  (admin: /admin/, API: /api/, API docs: /api/docs/)"
# runserver is daphne's (INSTALLED_APPS): one process serves HTTP and the consoles' WebSockets (ASGI).
# --insecure: serve static files with DEBUG off (a local portal; in production run
# `daphne portal.asgi:application` behind a web server: README, docs/consoles.md).
$PY manage.py runserver --insecure "127.0.0.1:${PORT:-8000}"
