#!/usr/bin/env bash
# Remove edge-agent from a gateway, keeping its configuration and data.
#
#   sudo scripts/uninstall.sh [--purge] [--no-systemctl]
#
# Stops and disables the service, removes the unit, the code ($PREFIX: the
# virtualenvs) and the /usr/local/bin/edge-agent link. KEEPS, unless --purge:
#   /etc/edge-agent                  configuration (and local drop-ins of the unit)
#   /var/lib/edge-agent              the SQLite buffer: unpublished data, KPI history
#   /var/cache/edge-agent, /var/log/edge-agent
# so that a re-install continues where the old one stopped.
#
# Environment: PREFIX (default /opt/edge-agent), DESTDIR (staging root, default
# empty), SYSTEMD_DIR (default /etc/systemd/system); the same as install.sh.
#
# Options:
#   --purge          also delete configuration, buffer, cache and logs (irreversible)
#   --no-systemctl   do not call systemctl
#   -h, --help       this text
set -euo pipefail

die() { echo "uninstall.sh: error: $*" >&2; exit 1; }
say() { echo "uninstall.sh: $*"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

PREFIX=${PREFIX:-/opt/edge-agent}
DESTDIR=${DESTDIR:-}
SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
purge=0
use_systemctl=1

while [ $# -gt 0 ]; do
  case "$1" in
    --purge) purge=1 ;;
    --no-systemctl) use_systemctl=0 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

case "$PREFIX" in
  /*) ;;
  *) die "PREFIX must be an absolute path, got '$PREFIX'" ;;
esac
# Refuse to rm -rf something that is obviously not ours.
case "$PREFIX" in
  /|/opt|/usr|/usr/local|/etc|/var|/home|/root) die "refusing PREFIX=$PREFIX" ;;
esac
if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
  die "run as root (sudo $0), or set DESTDIR for a staged tree"
fi

unit=$DESTDIR$SYSTEMD_DIR/edge-agent.service
can_systemctl=0
if [ "$use_systemctl" = 1 ] && [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  can_systemctl=1
fi

if [ "$can_systemctl" = 1 ]; then
  systemctl disable --now edge-agent.service 2>/dev/null || true
  say "stopped and disabled edge-agent"
else
  say "skipping systemctl"
fi

if [ -e "$unit" ]; then
  rm -f "$unit"
  say "removed $unit"
fi
if [ "$purge" = 1 ] && [ -d "$unit.d" ]; then
  rm -rf "$unit.d"
  say "removed drop-ins $unit.d"
fi
[ "$can_systemctl" = 1 ] && systemctl daemon-reload

if [ -d "$PREFIX" ] || [ -L "$PREFIX/venv" ]; then
  rm -rf "$PREFIX"
  say "removed $PREFIX"
fi
bin_link=$DESTDIR/usr/local/bin/edge-agent
if [ -L "$bin_link" ]; then
  case "$(readlink "$bin_link")" in
    "$PREFIX"/*) rm -f "$bin_link"; say "removed $bin_link" ;;
  esac
fi

data_dirs=(
  "$DESTDIR/etc/edge-agent"
  "$DESTDIR/var/lib/edge-agent" "$DESTDIR/var/lib/private/edge-agent"
  "$DESTDIR/var/cache/edge-agent" "$DESTDIR/var/cache/private/edge-agent"
  "$DESTDIR/var/log/edge-agent" "$DESTDIR/var/log/private/edge-agent"
)
if [ "$purge" = 1 ]; then
  for dir in "${data_dirs[@]}"; do
    if [ -e "$dir" ] || [ -L "$dir" ]; then
      rm -rf "$dir"
      say "purged $dir"
    fi
  done
else
  for dir in "${data_dirs[@]}"; do
    if [ -e "$dir" ]; then say "kept $dir"; fi
  done
  say "configuration and buffered data were kept; remove them with --purge"
fi
say "done"
