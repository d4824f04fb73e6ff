#!/usr/bin/env bash
# Install or upgrade edge-agent on a Debian / Raspberry Pi OS gateway.
#
#   sudo scripts/install.sh [OPTIONS] [WHEEL_OR_SOURCE_DIR]
#
# What it does, in order (each step says what it did):
#   1. creates a fresh virtualenv  $PREFIX/venvs/<UTC time>  and installs
#      the package into it (from the given wheel, else from this source tree);
#   2. smoke-tests it (edge-agent --version);
#   3. installs config/agent.example.toml as  $DESTDIR/etc/edge-agent/agent.toml
#      unless that file exists (an existing config is NEVER overwritten), and runs
#      the NEW version's  edge-agent check-config --no-environment  on it (the
#      file itself; the service checks its own environment in ExecStartPre);
#   4. only then points the  $PREFIX/venv  symlink at the new venv atomically: a
#      failed upgrade never touches the running installation, and the previous
#      venv is kept for rollback (older ones are removed); links
#      $DESTDIR/usr/local/bin/edge-agent to it;
#   5. installs the systemd unit into  $DESTDIR$SYSTEMD_DIR  (paths rewritten when
#      PREFIX is not /opt/edge-agent);
#   6. systemctl daemon-reload + enable --now (restart when already running),
#      skipped when DESTDIR is set, with --no-systemctl, or when systemd is not PID 1.
#      A service that is not running is NEVER started on the unedited example or
#      on a config that still has its placeholder addresses (check-config --strict):
#      the script says what to edit and how to start it afterwards;
#   7. prints the evidence key's fingerprint for the contract annex (the agent
#      creates the key at its first start; the installer never creates or copies it).
#
# Environment:
#   PREFIX       install root of the code            (default /opt/edge-agent)
#   DESTDIR      staging root for unit and config    (default empty: the real system)
#   SYSTEMD_DIR  unit directory                      (default /etc/systemd/system)
#   PYTHON       interpreter for the venv, >= 3.10   (default python3)
#   PIP_ARGS     extra pip arguments, e.g. for an offline gateway:
#                PIP_ARGS="--no-index --find-links /media/usb/wheels"
#
# Options:
#   --no-systemctl   do not call systemctl (image building, containers, tests)
#   --keep N         venvs to keep including the new one (default 2)
#   -h, --help       this text
set -euo pipefail

die() { echo "install.sh: error: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src_root=$(cd "$here/.." && pwd)

PREFIX=${PREFIX:-/opt/edge-agent}
DESTDIR=${DESTDIR:-}
SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
PYTHON=${PYTHON:-python3}
PIP_ARGS=${PIP_ARGS:-}
use_systemctl=1
keep=2
target=""

while [ $# -gt 0 ]; do
  case "$1" in
    --no-systemctl) use_systemctl=0 ;;
    --keep) shift; keep=${1:-}; [[ "$keep" =~ ^[1-9][0-9]*$ ]] || die "--keep needs a number >= 1" ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$target" ] || die "only one wheel or source directory may be given"; target=$1 ;;
  esac
  shift
done

case "$PREFIX" in
  /*) ;;
  *) die "PREFIX must be an absolute path, got '$PREFIX'" ;;
esac
[ "$PREFIX" != "/" ] || die "PREFIX must not be /"

# What to install: a wheel file, a source tree, or this script's own tree.
if [ -z "$target" ]; then
  target=$src_root
fi
if [ -f "$target" ]; then
  case "$target" in *.whl) ;; *) die "$target is not a wheel (.whl)" ;; esac
  target=$(cd "$(dirname "$target")" && pwd)/$(basename "$target")
elif [ -d "$target" ]; then
  [ -f "$target/pyproject.toml" ] || die "$target has no pyproject.toml; give a wheel or the source tree"
  target=$(cd "$target" && pwd)
else
  die "$target: no such file or directory"
fi

example_config=$src_root/config/agent.example.toml
[ -f "$example_config" ] || die "missing $example_config (run this script from the edge-agent source tree or sdist)"
unit_src=$src_root/systemd/edge-agent.service
[ -f "$unit_src" ] || die "missing $unit_src"

# Writing to the real system needs root; a staged install (DESTDIR) does not.
if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
  die "run as root (sudo $0 ...), or set DESTDIR for a staged install"
fi

# Python >= 3.10 with venv support (Debian splits it into python3-venv).
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; install it: sudo apt-get install python3 python3-venv"
"$PYTHON" - <<'PY' || die "$PYTHON is older than 3.10; edge-agent needs Python >= 3.10"
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
  || die "$PYTHON cannot create virtualenvs; install it: sudo apt-get install python3-venv"

if ! getent group dialout >/dev/null 2>&1; then
  say "warning: no 'dialout' group on this system; serial ports (Modbus RTU) will not be accessible"
fi

# 1. Fresh venv next to the current one, created under its final name (a venv
#    is not relocatable: its scripts hold absolute paths).
venvs=$PREFIX/venvs
new_venv=$venvs/$(date -u +%Y%m%dT%H%M%SZ)
[ -e "$new_venv" ] && new_venv=$new_venv-$$
mkdir -p "$venvs"
cleanup_new() { if [ -n "${new_venv:-}" ] && [ -d "$new_venv" ]; then rm -rf "$new_venv"; fi; }
trap cleanup_new EXIT
say "creating virtualenv $new_venv"
"$PYTHON" -m venv "$new_venv"
say "installing $target"
# shellcheck disable=SC2086  # PIP_ARGS is a word list on purpose
"$new_venv/bin/python" -m pip install --quiet --disable-pip-version-check $PIP_ARGS "$target" \
  || die "pip install failed; the current installation was not changed"

# 2. Smoke test.
version=$("$new_venv/bin/edge-agent" --version 2>/dev/null | awk '{print $NF}') || version=""
[ -n "$version" ] || die "the new installation does not run (edge-agent --version failed); nothing was changed"
# 3. Config: never overwrite the technician's file; validate it with the NEW
#    version before switching, so an upgrade that would not start changes nothing.
conf_dir=$DESTDIR/etc/edge-agent
conf=$conf_dir/agent.toml
mkdir -p "$conf_dir"
if [ -e "$conf" ]; then
  say "kept existing config $conf"
  install -m 0644 "$example_config" "$conf_dir/agent.example.toml"
else
  install -m 0644 "$example_config" "$conf"
  new_conf=1
  say "installed example config as $conf: edit it (devices, machines, [mqtt]) before use"
fi
if ! "$new_venv/bin/edge-agent" check-config --no-environment "$conf"; then
  [ "${new_conf:-0}" = 1 ] && rm -f "$conf"
  die "$conf does not validate with edge-agent $version (see above); nothing was changed. Fix the config and run the installer again"
fi
say "config $conf is valid"

# 4. Switch.
ln -sfn "$new_venv" "$PREFIX/venv.tmp-$$"
mv -Tf "$PREFIX/venv.tmp-$$" "$PREFIX/venv"
say "activated edge-agent $version: $PREFIX/venv -> $new_venv"
active=$new_venv
new_venv=""  # in use now: the EXIT trap must not remove it

# Keep the newest $keep venvs (names are UTC timestamps, so they sort by age).
mapfile -t all < <(find "$venvs" -mindepth 1 -maxdepth 1 -type d | sort)
for ((i = 0; i < ${#all[@]} - keep; i++)); do
  [ "${all[$i]}" = "$active" ] && continue
  rm -rf "${all[$i]}"
  say "removed old virtualenv ${all[$i]}"
done
if [ -f "$src_root/README.md" ]; then install -m 0644 "$src_root/README.md" "$PREFIX/README.md"; fi
# The README links to docs/*.md: keep the pages next to it for the unit's Documentation=.
if [ -d "$src_root/docs" ]; then
  mkdir -p "$PREFIX/docs"
  install -m 0644 "$src_root"/docs/*.md "$PREFIX/docs/"
fi

# A short command for the technician: edge-agent status.
bin_link=$DESTDIR/usr/local/bin/edge-agent
if [ ! -e "$bin_link" ] || [ -L "$bin_link" ]; then
  mkdir -p "$(dirname "$bin_link")"
  ln -sfn "$PREFIX/venv/bin/edge-agent" "$bin_link"
fi

# 5. systemd unit (paths follow PREFIX).
unit_dir=$DESTDIR$SYSTEMD_DIR
mkdir -p "$unit_dir"
sed -e "s#/opt/edge-agent#$PREFIX#g" "$unit_src" > "$unit_dir/edge-agent.service.tmp"
chmod 0644 "$unit_dir/edge-agent.service.tmp"
mv -f "$unit_dir/edge-agent.service.tmp" "$unit_dir/edge-agent.service"
say "installed unit $unit_dir/edge-agent.service"

# 6. Enable and start, but never on placeholders: a service started on the
#    example would poll documentation addresses and buffer for a broker that
#    does not exist.
start_ok=1
why=""
if cmp -s "$conf" "$example_config"; then
  start_ok=0
  why="$conf is the unedited example"
elif ! "$PREFIX/venv/bin/edge-agent" check-config --strict --no-environment "$conf" >/dev/null 2>&1; then
  start_ok=0
  why="$conf still has placeholder addresses (see: edge-agent check-config --strict $conf)"
fi
how_to_start="edit it (devices, machines, [mqtt]), check it with: edge-agent check-config --strict $conf; then: systemctl enable --now edge-agent"
if [ "$use_systemctl" = 0 ]; then
  say "skipping systemctl (--no-systemctl)"
elif [ -n "$DESTDIR" ]; then
  say "skipping systemctl (DESTDIR is set: staged install)"
elif [ ! -d /run/systemd/system ]; then
  say "skipping systemctl (systemd is not running as PID 1 here)"
else
  systemctl daemon-reload
  if systemctl is-active --quiet edge-agent.service; then
    systemctl enable edge-agent.service
    systemctl restart edge-agent.service
    say "restarted edge-agent on the new version"
    start_ok=1  # it was running: the technician chose this config; warned below
    [ -z "$why" ] || say "warning: $why"
  elif [ "$start_ok" = 1 ]; then
    systemctl enable --now edge-agent.service
    say "enabled and started edge-agent"
  fi
fi
if [ "$start_ok" = 0 ]; then
  say "the service is not started: $why"
  say "$how_to_start"
fi
# The evidence signing key (docs/evidence.md) is created by the agent at its first start in
# its state directory (0600, readable only by the service's user and root) and never leaves
# it: the installer neither creates nor copies it, it only says where the fingerprint is.
if fingerprint=$("$PREFIX/venv/bin/edge-agent" key show "$conf" 2>/dev/null | sed -n 's/^fingerprint: *//p') \
  && [ -n "$fingerprint" ]; then
  say "device key fingerprint (for the contract annex): $fingerprint"
else
  say "the device key that signs the evidence is created at the first start; then run:"
  say "  sudo edge-agent key show $conf   # its fingerprint goes into the contract annex"
fi
say "check it with: systemctl status edge-agent; journalctl -u edge-agent -f; edge-agent status"
say "done"
