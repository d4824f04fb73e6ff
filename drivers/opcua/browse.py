"""Explore an OPC-UA address space, emit ready-to-paste TOML, and probe configured tags.

* :func:`browse` walks the hierarchy below a start path breadth-first (one
  Browse call per level for all nodes of that level, one Read for the
  values and one for the data types of the variables), bounded by depth and
  by :data:`MAX_NODES`; the standard ``Server`` object is skipped unless the
  start path goes into it.
* :func:`render_tree` prints the result as an indented tree with NodeIds
  (``nsu=`` form, stable across restarts), data types, values and units.
* :func:`toml_block` turns chosen variables into ``[devices.X.tags.Y]``
  tables in the config's own format.
* :func:`probe_devices` reads every configured tag of the given devices once
  (``check-config --probe``).

It only reads; it never writes to the server. Results are plain values, no
asyncua types.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from asyncua import ua

from drivers.base import DeviceConfig, ProbeResult
from drivers.opcua._ua import AttributeIds, Client, ObjectIds
from drivers.opcua.config import Mode, OpcuaDevice
from drivers.opcua.convert import reading_from
from drivers.opcua.nodes import parse_browse_path
from drivers.opcua.resolve import (
    browse_children,
    read_data_types,
    read_metadata,
    resolve_browse_paths,
    safe_value,
)
from drivers.opcua.session import TRANSPORT_ERRORS, close_client, open_client
from edge_agent.errors import DeviceUnavailable
from edge_agent.model import Quality, Value

#: Upper bound of nodes listed by one browse (keeps a huge server from flooding the terminal).
MAX_NODES = 5000
_SERVER_OBJECT = ua.NodeId(ua.Int32(ObjectIds.Server))


@dataclass(frozen=True, slots=True, kw_only=True)
class BrowseEntry:
    """One node found while browsing."""

    path: str
    depth: int
    browse_name: str
    node_class: str
    node_id: str
    stable_id: str
    data_type: str = ""
    value: Value = None
    status: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def stable_node_id(node: ua.NodeId, namespaces: Sequence[str]) -> str:
    """NodeId text with the namespace URI (``nsu=...``) instead of its index (0 stays bare)."""
    text: str = node.to_string()
    if node.NamespaceIndex == 0 or node.NamespaceIndex >= len(namespaces):
        return text
    return f"nsu={namespaces[node.NamespaceIndex]};" + text.split(";", 1)[1]


async def _nodes_at(client: Client, path: str) -> ua.NodeId:
    resolved = (await resolve_browse_paths(client, [parse_browse_path(path)]))[0]
    if resolved.node_id is None:
        raise DeviceUnavailable(resolved.error)
    return resolved.node_id


async def browse(client: Client, *, path: str = "Objects", depth: int = 3) -> list[BrowseEntry]:
    """Walk the address space below ``path`` down to ``depth`` levels.

    Raises:
        DeviceUnavailable: When ``path`` does not exist.
    """
    namespaces = list(await client.get_namespace_array())
    start = await _nodes_at(client, path)
    level: list[tuple[ua.NodeId, str]] = [(start, path.strip("/"))]
    found: list[tuple[ua.ReferenceDescription, str, int]] = []
    for d in range(1, depth + 1):
        if not level or len(found) >= MAX_NODES:
            break
        children = await browse_children(client, [n for n, _ in level])
        nxt: list[tuple[ua.NodeId, str]] = []
        for (_, parent_path), refs in zip(level, children, strict=True):
            for ref in refs:
                node = ua.NodeId(
                    ref.NodeId.Identifier, ref.NodeId.NamespaceIndex, ref.NodeId.NodeIdType
                )
                if node == _SERVER_OBJECT:
                    continue
                child_path = f"{parent_path}/{ref.BrowseName.Name}"
                found.append((ref, child_path, d))
                nxt.append((node, child_path))
        level = nxt
    found = found[:MAX_NODES]
    variables = [
        ua.NodeId(r.NodeId.Identifier, r.NodeId.NamespaceIndex, r.NodeId.NodeIdType)
        for r, _, _ in found
        if r.NodeClass == ua.NodeClass.Variable
    ]
    values = (
        await client.uaclient.read_attributes(variables, AttributeIds.Value) if variables else []
    )
    types = await read_data_types(client, variables)
    meta = await read_metadata(client, variables)
    by_node = {n: (dv, t) for n, dv, t in zip(variables, values, types, strict=True)}
    out: list[BrowseEntry] = []
    for ref, child_path, d in found:
        node = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex, ref.NodeId.NodeIdType)
        entry = BrowseEntry(
            path=child_path,
            depth=d,
            browse_name=ref.BrowseName.Name,
            node_class=ref.NodeClass.name,
            node_id=node.to_string(),
            stable_id=stable_node_id(node, namespaces),
        )
        if node in by_node:
            dv, dtype = by_node[node]
            reading = reading_from("", "", dv, 0.0, 0.0)
            value = reading.value if reading.quality is Quality.GOOD else None
            if reading.quality is Quality.GOOD and dv.Value is not None:
                value = safe_value(dv.Value.Value)
            entry = replace(
                entry,
                data_type=dtype,
                value=value,
                status=reading.reason,
                metadata=meta.get(node, {}),
            )
        out.append(entry)
    return out


def render_tree(entries: Sequence[BrowseEntry]) -> str:
    """Indented tree: name, NodeId, and for variables data type, value and unit."""
    lines: list[str] = []
    for e in sorted(entries, key=lambda x: x.path):
        indent = "  " * (e.depth - 1)
        line = f"{indent}{e.browse_name}  [{e.node_class}] {e.stable_id}"
        if e.node_class == "Variable":
            shown = e.status or repr(e.value)
            if len(shown) > 60:  # keep one node per terminal line
                shown = shown[:57] + "..."
            line += f"  {e.data_type or '?'} = {shown}"
            if unit := e.metadata.get("unit"):
                line += f" {unit}"
        lines.append(line)
    return "\n".join(lines)


def tag_name(browse_name: str) -> str:
    """A config-safe tag name from a browse name (``GoodCount`` -> ``good_count``)."""
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", browse_name)
    snake = re.sub(r"[^0-9a-zA-Z_]+", "_", snake).strip("_").lower()
    return snake if snake and not snake[0].isdigit() else f"t_{snake}"


def toml_block(
    entries: Sequence[BrowseEntry], chosen: Sequence[str], *, device: str, endpoint: str
) -> tuple[str, list[str]]:
    """A device table plus one tag table per chosen variable.

    Args:
        entries: Browse result.
        chosen: Variables by path (``Objects/M1/GoodCount``), path suffix
            (``M1/GoodCount``), browse name or NodeId.
        device: Device name for ``[devices.<device>]``.
        endpoint: Endpoint URL written into the block.

    Returns:
        The TOML text and the list of ``chosen`` items that matched nothing.
    """
    lines = [
        f"[devices.{device}]",
        'protocol = "opcua"',
        f'endpoint = "{endpoint}"',
        'mode = "subscribe"',
    ]
    lines.append("interval_ms = 1000")
    missing: list[str] = []
    used: set[str] = set()
    variables = [e for e in entries if e.node_class == "Variable"]
    for want in chosen:
        key = want.strip("/")
        match = next(
            (
                e
                for e in variables
                if key in (e.path, e.browse_name, e.node_id, e.stable_id)
                or e.path.endswith("/" + key)
            ),
            None,
        )
        if match is None:
            missing.append(want)
            continue
        name = tag_name(match.browse_name)
        while name in used:
            name += "_2"
        used.add(name)
        lines.append("")
        comment = f"  # {match.data_type}" if match.data_type else ""
        if unit := match.metadata.get("unit"):
            comment += f", unit {unit}"
        lines.append(f"[devices.{device}.tags.{name}]")
        lines.append(f'node = "{match.stable_id}"{comment}')
    return "\n".join(lines) + "\n", missing


async def probe_devices(devices: Sequence[DeviceConfig]) -> list[ProbeResult]:
    """Read every configured tag of the OPC-UA devices once (one session per device group).

    A session that cannot be opened yields one failed result per tag with the reason.
    """
    from drivers.opcua import group_devices  # local: avoids an import cycle at package import

    opcua = [d for d in devices if isinstance(d, OpcuaDevice)]
    results: list[ProbeResult] = []
    for group in group_devices(opcua):
        polled = [replace(d, mode=Mode.POLL) for d in group]
        results.extend(await _probe_group(polled))
    return results


async def _probe_group(group: Sequence[OpcuaDevice]) -> list[ProbeResult]:
    from drivers.opcua.link import OpcuaLink

    link = OpcuaLink(group)
    try:
        await link.connect()
        result = await link.poll()
    except DeviceUnavailable as exc:
        return [
            ProbeResult(device=d.name, tag=t, ok=False, reason=str(exc))
            for d in group
            for t in d.tag_names
        ]
    except TRANSPORT_ERRORS as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return [
            ProbeResult(device=d.name, tag=t, ok=False, reason=reason)
            for d in group
            for t in d.tag_names
        ]
    finally:
        await link.close()
    out: list[ProbeResult] = []
    for batch in result.batches:
        for r in batch:
            ok = r.quality is Quality.GOOD
            out.append(
                ProbeResult(device=r.device, tag=r.tag, ok=ok, value=r.value, reason=r.reason)
            )
    return out


async def open_for_browse(device: OpcuaDevice) -> Client:
    """Open a session for the browse command (same security/identity handling as links)."""

    async def _ignore(_exc: Exception) -> None:
        return None

    return await open_client(device, on_lost=_ignore)


async def close_browse(client: Client, timeout_s: float) -> None:
    """Close a session opened by :func:`open_for_browse`."""
    await close_client(client, timeout_s)
