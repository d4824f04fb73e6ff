#!/usr/bin/env bash
# Make sure the local PostgreSQL the collector tests use (127.0.0.1:5432) is running.
# Starts the Debian cluster when it is installed but stopped (as root); never installs,
# restarts or reconfigures it. When PostgreSQL is not installed the collector tests skip
# and say so; this script then only prints how to install it.
set -euo pipefail
host=127.0.0.1 port=5432
ready() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$host" -p "$port"; }
if ready; then exit 0; fi
if [ ! -d /etc/postgresql ] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "PostgreSQL is not installed: the collector tests will be skipped" \
       "(install with: sudo apt-get install postgresql)" >&2
  exit 0
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
if [ "$(id -u)" = 0 ]; then
  echo "Starting PostgreSQL $version (cluster main) for the tests" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
else
  echo "PostgreSQL is stopped; start it with: sudo pg_ctlcluster $version main start" >&2
fi
for _ in $(seq 1 50); do ready && exit 0; sleep 0.2; done
echo "PostgreSQL did not answer on $host:$port; the collector tests will fail" >&2
