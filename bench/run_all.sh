#!/bin/sh
# Run every benchmark in turn and print their figures (see bench/README.md).
# Benchmarks 2, 3, 7, 8 and 9 need root and the lab; without root they are skipped.
# Extra environment: LAB_DIR, BENCH_PG_HOST/PORT/USER, BENCH_REDIS_URL, BENCH_REDIS_DB.
set -eu
cd "$(dirname "$0")/.."
PY=.venv/bin/python

$PY bench/control_plane.py
echo
$PY bench/vlan_alloc.py
echo
$PY bench/api_load.py
echo
if [ "$(id -u)" = 0 ]; then
    $PY bench/connections.py
    echo
    $PY bench/deploy_latency.py
    echo
    $PY bench/guest_login.py
    echo
    $PY bench/parallel_deploy.py
    echo
    $PY bench/ssh_connect.py
else
    echo "# benchmarks 2 (connections), 3 (deploy latency), 7 (guest login), 8 (parallel deploys) and 9 (SSH connect) skipped: they need root (the lab)"
fi
