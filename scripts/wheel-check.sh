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
whl=$(ls "$tmp"/dist/*.whl)
# The collector extra too: its schemas and migrations must ship inside the wheel.
"$tmp/venv/bin/pip" install -q "$whl[collector]"
cd "$tmp"
"$tmp/venv/bin/edge-agent" --version
for f in "$root"/config/*.toml; do
  # The files themselves: the examples name a real gateway's CA file and password variable.
  "$tmp/venv/bin/edge-agent" check-config --no-environment "$f" >/dev/null
  echo "check-config ok: $(basename "$f")"
done
# Sparkplug B: the committed protoc output loads with the protobuf the wheel pulls in.
"$tmp/venv/bin/python" -c "import edge_agent.uplink.sparkplug.codec" && echo "sparkplug gencode ok"
"$tmp/venv/bin/edge-agent-sim" list-scenarios >/dev/null
"$tmp/venv/bin/edge-agent-sim" describe --scenario steady >/dev/null
# The collector: config check, schemas and migrations found inside the installed package.
"$tmp/venv/bin/edge-agent-collect" --version
for f in "$root"/config/collector/*.toml; do
  "$tmp/venv/bin/edge-agent-collect" check-config "$f" >/dev/null
  echo "collector check-config ok: $(basename "$f")"
done
"$tmp/venv/bin/python" - <<'PY'
from yoyo import read_migrations
from edge_agent.collect.migrate import SOURCE
from edge_agent.collect.schemas import load_schemas, schema_dir
assert "site-packages" in str(schema_dir()), schema_dir()
assert {"kpi", "stop", "health", "telemetry", "status"} <= load_schemas().kinds
assert len(read_migrations(SOURCE)) >= 2
print("collector schemas and migrations ship in the wheel:", schema_dir())
PY
if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
  db="edge_wheel_check_$$"
  "$tmp/venv/bin/python" -c "import psycopg; psycopg.connect('host=127.0.0.1 user=postgres dbname=postgres', autocommit=True).execute('CREATE DATABASE $db')"
  "$tmp/venv/bin/edge-agent-collect" migrate --dsn "host=127.0.0.1 user=postgres dbname=$db"
  "$tmp/venv/bin/edge-agent-collect" status --dsn "host=127.0.0.1 user=postgres dbname=$db" | head -n 3
  "$tmp/venv/bin/python" -c "import psycopg; psycopg.connect('host=127.0.0.1 user=postgres dbname=postgres', autocommit=True).execute('DROP DATABASE $db WITH (FORCE)')"
fi
# Evidence: a chain signed by the installed package, checked by the installed `verify`
# (what a customer runs on a laptop that never saw the gateway): 0 untouched, 1 altered.
"$tmp/venv/bin/python" - "$tmp/evidence" <<'PY'
import asyncio, json, sys
from pathlib import Path
from edge_agent.buffer import Buffer, Outgoing, StorageConfig
from edge_agent.evidence.chain import Chain
from edge_agent.evidence.keys import KeyStore
from edge_agent.uplink.payload import envelope

async def main(state: Path) -> None:
    keys = KeyStore(state)
    buf = Buffer(StorageConfig(path=state / "buffer.db"), "gw", chain=Chain(keys, "gw", topics={"gap": "g", "key": "k"}))
    await buf.open()
    for i in range(5):
        data = {"name": f"hour:{i}", "machine": "m", "final": True, "revision": 0, "oee": 0.5}
        await buf.publish_many([Outgoing(kind="kpi", topic="t", data=data, priority=0)])
    rows = await buf.fetch_outbox(after=0, limit=100)
    (state / "capture.jsonl").write_text("".join(envelope(r, "gw", buf.epoch).decode() + "\n" for r in rows))
    (state / "device.pem").write_text(keys.active().public.pem())
    await buf.close()

state = Path(sys.argv[1]); state.mkdir()
asyncio.run(main(state))
PY
"$tmp/venv/bin/edge-agent" verify "$tmp/evidence/capture.jsonl" --key "$tmp/evidence/device.pem" | tail -n 1
sed -i '3s/"oee":0.5/"oee":0.9/' "$tmp/evidence/capture.jsonl"
if "$tmp/venv/bin/edge-agent" verify "$tmp/evidence/capture.jsonl" --key "$tmp/evidence/device.pem" >/dev/null; then
  echo "wheel-check: verify accepted an altered record" >&2; exit 1
fi
echo "evidence verify ok from the wheel"
# The demo must run from the installed wheel too (its config ships inside the package).
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
  "$tmp/venv/bin/edge-agent" demo --duration 6 --plain | tail -n 8
fi
echo "wheel-check ok"
