#!/usr/bin/env bash
# Regenerate edge_agent/uplink/sparkplug/sparkplug_b_pb2.py(.pyi) from the Eclipse Tahu
# sparkplug_b.proto next to them, with the protoc bundled in grpcio-tools (dev extra).
# The generated files are committed; run this after changing the proto or the protobuf
# pin (the gencode version must match the runtime's major, see pyproject.toml).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/edge_agent/uplink/sparkplug"
"$root/.venv/bin/python" -m grpc_tools.protoc -I "$dir" \
  --python_out="$dir" --pyi_out="$dir" "$dir/sparkplug_b.proto"
"$root/.venv/bin/python" -m grpc_tools.protoc --version
