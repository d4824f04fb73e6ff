"""Connect-time resolution of configured node addresses into server NodeIds.

Run once per session (never per read), because namespace indexes and even
node ids behind a browse path may change when a server restarts:

* ``nsu=<uri>;...`` -> the URI's index in the server's NamespaceArray;
* browse paths -> walked from the Root folder one level at a time, with one
  Browse call per level for *all* paths of the session (hierarchical forward
  references). A segment without a namespace prefix matches a browse name in
  any namespace; ``2:Name`` matches namespace 2 only;
* engineering units: for every resolved node, the ``EngineeringUnits``
  (EUInformation) and ``EURange`` properties of AnalogItemType variables are
  looked up with one TranslateBrowsePathsToNodeIds call and one Read.

A tag that cannot be resolved gets an error text instead of a NodeId; the
link reports it as a bad reading (a rejected address isolates the tag) and keeps the
other tags running. Transport errors propagate to the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from asyncua import ua

from drivers.opcua._ua import AttributeIds, Client, ObjectIds
from drivers.opcua.convert import to_value
from drivers.opcua.nodes import BrowsePath, IdType, NodeRef
from edge_agent.errors import DecodeError


def _std(identifier: int) -> ua.NodeId:
    """NodeId of a standard (namespace 0) node."""
    return ua.NodeId(ua.Int32(identifier))


def _good(dv: ua.DataValue) -> bool:
    return dv.StatusCode is None or dv.StatusCode.is_good()


@dataclass(frozen=True, slots=True)
class Resolved:
    """Outcome of resolving one address: a NodeId, or why there is none."""

    node_id: ua.NodeId | None
    error: str = ""


def to_ua_node_id(ref: NodeRef, namespace_index: int) -> ua.NodeId:
    """Build the asyncua NodeId for a parsed reference in a known namespace."""
    ident: Any
    if ref.id_type is IdType.NUMERIC:
        ident, kind = int(ref.identifier), ua.NodeIdType.Numeric
    elif ref.id_type is IdType.STRING:
        ident, kind = str(ref.identifier), ua.NodeIdType.String
    elif ref.id_type is IdType.GUID:
        import uuid

        ident, kind = uuid.UUID(str(ref.identifier)), ua.NodeIdType.Guid
    else:
        ident, kind = ref.opaque_bytes(), ua.NodeIdType.ByteString
    return ua.NodeId(ident, ua.Int16(namespace_index), kind)


async def resolve_node_refs(client: Client, refs: Sequence[NodeRef]) -> list[Resolved]:
    """Resolve NodeId references, reading the NamespaceArray once when any uses ``nsu=``."""
    namespaces: list[str] = []
    if any(r.namespace_uri is not None for r in refs):
        namespaces = list(await client.get_namespace_array())
    out: list[Resolved] = []
    for ref in refs:
        if ref.namespace_uri is None:
            out.append(Resolved(to_ua_node_id(ref, ref.namespace_index or 0)))
        elif ref.namespace_uri in namespaces:
            out.append(Resolved(to_ua_node_id(ref, namespaces.index(ref.namespace_uri))))
        else:
            out.append(
                Resolved(
                    None,
                    f"namespace URI {ref.namespace_uri!r} is not in the server's NamespaceArray",
                )
            )
    return out


async def browse_children(
    client: Client, nodes: Sequence[ua.NodeId]
) -> list[list[ua.ReferenceDescription]]:
    """Hierarchical forward references of each node, with one Browse call for all of them."""
    params = ua.BrowseParameters()
    params.View = ua.ViewDescription()
    params.RequestedMaxReferencesPerNode = 0
    for node in nodes:
        desc = ua.BrowseDescription()
        desc.NodeId = node
        desc.BrowseDirection = ua.BrowseDirection.Forward
        desc.ReferenceTypeId = _std(ObjectIds.HierarchicalReferences)
        desc.IncludeSubtypes = True
        desc.NodeClassMask = 0
        desc.ResultMask = ua.BrowseResultMask.All
        params.NodesToBrowse.append(desc)
    results = await client.uaclient.browse(params)
    return [list(r.References or []) if r.StatusCode.is_good() else [] for r in results]


async def resolve_browse_paths(client: Client, paths: Sequence[BrowsePath]) -> list[Resolved]:
    """Walk browse paths from the Root folder, one batched Browse per level."""
    current: list[ua.NodeId | None] = [_std(ObjectIds.RootFolder) for _ in paths]
    errors = ["" for _ in paths]
    depth = max((len(p.segments) for p in paths), default=0)
    for level in range(depth):
        active = [
            i for i, p in enumerate(paths) if level < len(p.segments) and current[i] is not None
        ]
        if not active:
            break
        distinct: list[ua.NodeId] = list({n: None for i in active if (n := current[i]) is not None})
        children = dict(zip(distinct, await browse_children(client, distinct), strict=True))
        for i in active:
            seg = paths[i].segments[level]
            parent = current[i]
            assert parent is not None  # noqa: S101 - filtered by `active`
            match = next(
                (
                    ref.NodeId
                    for ref in children.get(parent, [])
                    if ref.BrowseName.Name == seg.name
                    and (
                        seg.namespace_index is None
                        or ref.BrowseName.NamespaceIndex == seg.namespace_index
                    )
                ),
                None,
            )
            if match is None:
                current[i] = None
                errors[i] = (
                    f"browse path {paths[i]}: no child {str(seg)!r} below "
                    f"{'/'.join(map(str, paths[i].segments[:level])) or 'Root'}"
                )
            else:
                current[i] = ua.NodeId(match.Identifier, match.NamespaceIndex, match.NodeIdType)
    return [Resolved(node, err) for node, err in zip(current, errors, strict=True)]


def _eu_dict(value: Any) -> dict[str, Any] | None:
    if isinstance(value, ua.EUInformation):
        return {
            "unit": value.DisplayName.Text if value.DisplayName else None,
            "unit_id": value.UnitId,
            "unit_description": value.Description.Text if value.Description else None,
            "unit_namespace": value.NamespaceUri,
        }
    return None


async def read_metadata(
    client: Client, nodes: Iterable[ua.NodeId]
) -> dict[ua.NodeId, dict[str, Any]]:
    """Engineering units and range of AnalogItemType variables (empty dict for others)."""
    node_list = list(nodes)
    if not node_list:
        return {}
    names = ("EngineeringUnits", "EURange")
    bpaths = []
    for node in node_list:
        for name in names:
            path = ua.BrowsePath()
            path.StartingNode = node
            element = ua.RelativePathElement()
            element.ReferenceTypeId = _std(ObjectIds.HasProperty)
            element.IncludeSubtypes = True  # type: ignore[assignment]
            element.IsInverse = False  # type: ignore[assignment] # asyncua defaults to True
            element.TargetName = ua.QualifiedName(name, 0)
            path.RelativePath = ua.RelativePath(Elements=[element])
            bpaths.append(path)
    results = await client.uaclient.translate_browsepaths_to_nodeids(bpaths)
    wanted: list[tuple[int, str, ua.NodeId]] = []
    for k, res in enumerate(results):
        if res.StatusCode.is_good() and res.Targets:
            target = res.Targets[0].TargetId
            wanted.append(
                (
                    k // len(names),
                    names[k % len(names)],
                    ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType),
                )
            )
    out: dict[ua.NodeId, dict[str, Any]] = {n: {} for n in node_list}
    if not wanted:
        return out
    values = await client.uaclient.read_attributes([w[2] for w in wanted], AttributeIds.Value)
    for (idx, name, _), dv in zip(wanted, values, strict=True):
        if not _good(dv) or dv.Value is None:
            continue
        raw = dv.Value.Value
        meta = out[node_list[idx]]
        if name == "EngineeringUnits" and (eu := _eu_dict(raw)) is not None:
            meta.update(eu)
        elif name == "EURange" and isinstance(raw, ua.Range):
            meta["eu_range"] = [raw.Low, raw.High]
    return out


async def read_data_types(client: Client, nodes: Sequence[ua.NodeId]) -> list[str]:
    """Names of the variables' data types (one Read for the type ids, one for their names)."""
    if not nodes:
        return []
    dts = await client.uaclient.read_attributes(list(nodes), AttributeIds.DataType)
    type_ids = [dv.Value.Value if _good(dv) and dv.Value is not None else None for dv in dts]
    known = [t for t in type_ids if isinstance(t, ua.NodeId)]
    names: dict[ua.NodeId, str] = {}
    if known:
        res = await client.uaclient.read_attributes(known, AttributeIds.BrowseName)
        for t, dv in zip(known, res, strict=True):
            if _good(dv) and dv.Value is not None:
                names[t] = dv.Value.Value.Name
    return [names.get(t, "") if isinstance(t, ua.NodeId) else "" for t in type_ids]


def safe_value(raw: Any) -> Any:
    """Best-effort flat value for display: converted, or the type name when not representable."""
    try:
        return to_value(raw)
    except DecodeError:
        return f"<{type(raw).__name__}>"
