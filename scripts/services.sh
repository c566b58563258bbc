#!/usr/bin/env bash
# Start the local services Slice Portal uses when they are not already running:
# Redis on 127.0.0.1:6379 and (with --postgres) PostgreSQL on 127.0.0.1:5432 with a `test` database.
set -euo pipefail

redis_up() { .venv/bin/python -c "import redis,sys; redis.Redis.from_url('${REDIS_URL:-redis://127.0.0.1:6379/0}').ping()" 2>/dev/null; }
if ! redis_up; then
  echo "==> starting redis-server on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "${TMPDIR:-/tmp}" --logfile "${TMPDIR:-/tmp}/slice-portal-redis.log"
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  redis_up || { echo "!! Redis did not start" >&2; exit 1; }
fi

if [ "${1:-}" = "--postgres" ]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "==> starting PostgreSQL"
    version=$(ls /etc/postgresql | sort -V | tail -1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
  fi
  # A password login works whether the server trusts 127.0.0.1 (CI) or asks for one (a fresh install).
  if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
    su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null 2>&1 || true
    su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='test'\"" 2>/dev/null | grep -q 1 \
      || su postgres -c "createdb test" 2>/dev/null || true
  fi
fi
