"""OPC UA node maps, defined once as data: the simulated PLCs serve them, the gateway reads them.

A node map is the OPC UA counterpart of a Modbus register map (:mod:`carbonedge.profiles`):
a tuple of :class:`NodePoint` (where the value lives, its OPC UA data type, the scale to the
quantity's canonical unit). Where a value lives is written either as a node id or as a
browse path, with ``{object}`` standing for the device's object in the server (one PLC
serves several production lines, each under its own object):

- node id: ``s={object}.MassProduced`` (string id in the map's namespace), or a full
  ``ns=3;s="DB_Prod"."Mass"`` / ``nsu=urn:...;i=1001`` as a PLC's export lists it;
- browse path: ``/Objects/PLC/{object}/MassProduced`` (segments in the map's namespace
  unless prefixed ``N:``; ``0:Objects`` is the standard root).

A map names its namespace by URI, never by index: servers may renumber namespace indexes
between restarts (OPC 10000-3 §8.2.2), so the gateway resolves the URI on every connect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from carbonedge import quantities

#: OPC UA built-in data types a node map may use (OPC 10000-6 §5.1.2), as asyncua names them.
UaType = Literal["Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double"]
UA_TYPES: tuple[str, ...] = ("Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double")
_UNSIGNED_BITS = {"Byte": 8, "UInt16": 16, "UInt32": 32, "UInt64": 64}


@dataclass(frozen=True, slots=True)
class NodePoint:
    """One value in a node map.

    ``name`` is the key within the map; it is the catalogue quantity unless ``quantity``
    says otherwise. ``scale`` converts the served value to the canonical unit:
    ``canonical = served * scale``. ``node`` is a node id or a browse path (module doc).
    """

    name: str
    node: str
    ua_type: UaType = "Double"
    scale: float = 1.0
    quantity: str | None = ""  # "" means same as name; None: not published
    #: Absolute deadband for the monitored item, in the served unit (gauges only; 0 = every change).
    deadband: float = 0.0

    @property
    def quantity_name(self) -> str | None:
        return self.name if self.quantity == "" else self.quantity

    def is_browse_path(self) -> bool:
        return self.node.startswith("/")

    def node_for(self, obj: str) -> str:
        return self.node.replace("{object}", obj)


@dataclass(frozen=True)
class NodeMap:
    name: str
    #: Namespace URI of the map's node ids and browse-path segments.
    namespace: str
    points: tuple[NodePoint, ...]
    manufacturer: str = "generic"
    model: str = ""
    source: str = ""
    by_name: dict[str, NodePoint] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, NodePoint] = {}
        for p in self.points:
            if p.name in by_name:
                raise ValueError(f"node map {self.name}: duplicate point {p.name!r}")
            if p.ua_type not in UA_TYPES:
                raise ValueError(f"node map {self.name}: point {p.name}: unknown OPC UA type {p.ua_type!r}; known: {', '.join(UA_TYPES)}")
            if not p.node:
                raise ValueError(f"node map {self.name}: point {p.name} has no node id or browse path")
            by_name[p.name] = p
            if p.quantity_name is not None:
                quantities.get(p.quantity_name)
        object.__setattr__(self, "by_name", by_name)

    def published_quantities(self) -> list[str]:
        return [q for p in self.points if (q := p.quantity_name) is not None]


def counter_modulus(point: NodePoint) -> float | None:
    """For an unsigned integer counter node, the canonical value at which it rolls over (UDINT in a PLC); else ``None``."""
    bits = _UNSIGNED_BITS.get(point.ua_type)
    return None if bits is None else (1 << bits) * point.scale


def is_counter(point: NodePoint) -> bool:
    q = point.quantity_name
    return q is not None and quantities.get(q).kind == "counter"


# --------------------------------------------------------------------------- the catalogue

#: The namespace of carbonedge's PLC convention (the simulators serve it; a real PLC program can adopt it).
PLC_NAMESPACE = "urn:carbonedge:plc"

N = NodePoint

#: A production line's counter block in a PLC: the same values as the Modbus ``plc-line-counter`` profile,
#: in the types a PLC program keeps them (LREAL mass and capacity, UDINT piece counter, BOOL line state).
PLC_LINE_OPCUA = NodeMap(
    name="plc-line-opcua",
    namespace=PLC_NAMESPACE,
    manufacturer="generic",
    model="PLC production counter block over OPC UA (one object per line)",
    source="carbonedge convention for PLC counter blocks over OPC UA: objects under /Objects/PLC, string node ids "
    "'<line>.<Variable>' in namespace urn:carbonedge:plc.",
    points=(
        N("production_mass", "s={object}.MassProduced", "Double", 0.001),  # kg -> t
        N("production_count", "s={object}.UnitsProduced", "UInt32"),  # UDINT, wraps at 2**32
        N("production_capacity", "s={object}.CapacityProduced", "Double", 0.001),  # Wh of cell capacity -> kWh
        N("running", "s={object}.Running", "Boolean"),
    ),
)

NODE_MAPS: dict[str, NodeMap] = {m.name: m for m in (PLC_LINE_OPCUA,)}


def get_node_map(name: str) -> NodeMap:
    try:
        return NODE_MAPS[name]
    except KeyError:
        raise KeyError(f"unknown OPC UA node map {name!r}; known: {', '.join(sorted(NODE_MAPS))}") from None
