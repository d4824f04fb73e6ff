#!/usr/bin/env bash
# Build the wheel, install it into a fresh venv outside the tree, and run the
# console scripts from another directory, so a package missing from the wheel
# (flat layout, three packages) fails here and not on a gateway.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$root/.venv/bin/python" -m pip wheel -q --no-deps -w "$tmp/dist" "$root"
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q "$tmp"/dist/*.whl
cd "$tmp"
"$tmp/venv/bin/edge-agent" --version
for f in "$root"/config/*.toml; do
  "$tmp/venv/bin/edge-agent" check-config "$f" >/dev/null
  echo "check-config ok: $(basename "$f")"
done
# Sparkplug B: the committed protoc output loads with the protobuf the wheel pulls in.
"$tmp/venv/bin/python" -c "import edge_agent.uplink.sparkplug.codec" && echo "sparkplug gencode ok"
"$tmp/venv/bin/edge-agent-sim" list-scenarios >/dev/null
"$tmp/venv/bin/edge-agent-sim" describe --scenario steady >/dev/null
# The demo must run from the installed wheel too (its config ships inside the package).
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
  "$tmp/venv/bin/edge-agent" demo --duration 6 --plain | tail -n 8
fi
echo "wheel-check ok"
