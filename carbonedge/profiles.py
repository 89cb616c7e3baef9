"""Meter register maps ("profiles"), defined once: the simulators serve them, the gateway reads them.

A profile is data: a tuple of :class:`PointSpec` (address, data type, word order,
scale to the canonical unit) in the style of Home Assistant's entity descriptions
and pymodbus's ``SimData``. :func:`encode_point` and :func:`decode_point` are exact
inverses for every data type and word order (a property test checks the round trip),
and :func:`read_plan` coalesces a profile's points into as few Modbus requests as
possible (at most 125 registers each).

Register maps come from the manufacturers' documentation as summarised in
the register-map sources of docs/sources.md (keys [D1]–[D12]); each profile names its source.
Addresses here are PDU addresses (0-based, as sent on the wire).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from carbonedge import quantities

DType = Literal["uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"]
WordOrder = Literal["big", "little"]
Table = Literal["holding", "input"]

_WIDTH = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "uint64": 4, "int64": 4, "float32": 2, "float64": 4}
_FMT = {"uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i", "uint64": ">Q", "int64": ">q", "float32": ">f", "float64": ">d"}
MAX_REGISTERS_PER_READ = 125  # Modbus limit for FC03/FC04 (Modbus Application Protocol V1.1b3, §6.3/§6.4)


@dataclass(frozen=True, slots=True)
class PointSpec:
    """One value in a meter's register map.

    ``name`` is the key within the profile; it is the catalogue quantity unless
    ``quantity`` says otherwise (``None``: an internal point only used by a
    :class:`DerivedSpec`). ``scale`` converts the raw register value to the
    quantity's canonical unit: ``canonical = raw * scale``.
    """

    name: str
    address: int
    dtype: DType
    scale: float = 1.0
    word_order: WordOrder = "big"
    table: Table | None = None  # None: the profile's default table
    quantity: str | None = ""  # "" means same as name
    not_available: tuple[int, ...] = ()  # raw integer patterns that mean "no value" (ABB all-0xFF)

    @property
    def width(self) -> int:
        return _WIDTH[self.dtype]

    @property
    def quantity_name(self) -> str | None:
        return self.name if self.quantity == "" else self.quantity


@dataclass(frozen=True, slots=True)
class DerivedSpec:
    """A published quantity computed from internal points (e.g. tariff T1 + T2)."""

    quantity: str
    sum_of: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    name: str
    manufacturer: str
    model: str
    table: Table
    points: tuple[PointSpec, ...]
    derived: tuple[DerivedSpec, ...] = ()
    source: str = ""
    #: Largest hole (in registers) a coalesced read may span. Real meters differ:
    #: some answer unmapped registers with 0, others with an exception.
    max_gap: int = 16
    notes: str = ""
    by_name: dict[str, PointSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, PointSpec] = {}
        for p in self.points:
            if p.name in by_name:
                raise ValueError(f"profile {self.name}: duplicate point {p.name!r}")
            by_name[p.name] = p
            qn = p.quantity_name
            if qn is not None:
                quantities.get(qn)
            if p.address < 0 or p.address + p.width > 65536:
                raise ValueError(f"profile {self.name}: point {p.name} address {p.address} out of range")
        for d in self.derived:
            quantities.get(d.quantity)
            for src in d.sum_of:
                if src not in by_name:
                    raise ValueError(f"profile {self.name}: derived {d.quantity} uses unknown point {src!r}")
        # Overlapping registers within one table are a configuration error, never "last one wins".
        for table in ("holding", "input"):
            spans = sorted((p.address, p.address + p.width, p.name) for p in self.points if self.table_of(p) == table)
            for (a0, a1, n0), (b0, _b1, n1) in zip(spans, spans[1:]):
                if b0 < a1:
                    raise ValueError(f"profile {self.name}: points {n0} and {n1} overlap at register {b0}")
        object.__setattr__(self, "by_name", by_name)

    def table_of(self, point: PointSpec) -> Table:
        return point.table or self.table

    def published_quantities(self) -> list[str]:
        names = [p.quantity_name for p in self.points if p.quantity_name is not None]
        return [n for n in names if n is not None] + [d.quantity for d in self.derived]


# --------------------------------------------------------------------------- encode / decode


def encode_point(point: PointSpec, value: float) -> list[int]:
    """Encode a canonical value into the point's registers (what a meter would serve).

    Unsigned integer counters wrap modulo 2**bits, exactly as a real register rolls over.
    """
    raw = value / point.scale
    dt = point.dtype
    if dt.startswith("float"):
        data = struct.pack(_FMT[dt], raw)
    else:
        bits = 16 * _WIDTH[dt]
        iv = int(round(raw))
        if dt.startswith("u"):
            iv %= 1 << bits
        else:
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            iv = max(lo, min(hi, iv))
        data = struct.pack(_FMT[dt], iv)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if point.word_order == "little":
        words.reverse()
    return words


def raw_from_registers(point: PointSpec, registers: list[int]) -> int | float:
    words = list(registers[: point.width])
    if len(words) != point.width:
        raise ValueError(f"{point.name}: need {point.width} registers, got {len(words)}")
    if point.word_order == "little":
        words.reverse()
    data = b"".join(w.to_bytes(2, "big") for w in words)
    return struct.unpack(_FMT[point.dtype], data)[0]


def decode_point(point: PointSpec, registers: list[int]) -> float | None:
    """Decode a point's registers to the canonical value; ``None`` for a "not available" pattern."""
    raw = raw_from_registers(point, registers)
    if point.not_available and isinstance(raw, int):
        unsigned = int.from_bytes(b"".join(w.to_bytes(2, "big") for w in registers[: point.width]), "big")
        if unsigned in point.not_available:
            return None
    return float(raw) * point.scale


def counter_modulus(point: PointSpec) -> float | None:
    """For an unsigned integer counter, the canonical value at which it rolls over; else ``None``."""
    if point.dtype.startswith("uint"):
        return (1 << (16 * point.width)) * point.scale
    return None


# --------------------------------------------------------------------------- read planning


@dataclass(frozen=True, slots=True)
class ReadBlock:
    table: Table
    start: int
    count: int
    points: tuple[PointSpec, ...]


def read_plan(profile: Profile, names: Iterable[str] | None = None) -> list[ReadBlock]:
    """Coalesce the wanted points into as few reads as possible (≤ 125 registers, gaps ≤ ``max_gap``)."""
    wanted = [profile.by_name[n] for n in names] if names is not None else list(profile.points)
    blocks: list[ReadBlock] = []
    for table in ("holding", "input"):
        pts = sorted((p for p in wanted if profile.table_of(p) == table), key=lambda p: p.address)
        cur: list[PointSpec] = []
        start = end = 0
        for p in pts:
            if cur and (p.address - end > profile.max_gap or p.address + p.width - start > MAX_REGISTERS_PER_READ):
                blocks.append(ReadBlock(table, start, end - start, tuple(cur)))
                cur = []
            if not cur:
                start = p.address
            cur.append(p)
            end = max(end if len(cur) > 1 else 0, p.address + p.width)
        if cur:
            blocks.append(ReadBlock(table, start, end - start, tuple(cur)))
    return blocks


def decode_block(block: ReadBlock, registers: list[int]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for p in block.points:
        off = p.address - block.start
        out[p.name] = decode_point(p, registers[off : off + p.width])
    return out


def publishable(profile: Profile, raw: Mapping[str, float | None]) -> dict[str, float | None]:
    """Map decoded point values to catalogue quantities, computing derived sums."""
    out: dict[str, float | None] = {}
    for name, v in raw.items():
        qn = profile.by_name[name].quantity_name
        if qn is not None:
            out[qn] = v
    for d in profile.derived:
        parts = [raw.get(s) for s in d.sum_of]
        out[d.quantity] = None if any(p is None for p in parts) else float(sum(p for p in parts if p is not None))
    return out


# --------------------------------------------------------------------------- the catalogue

P = PointSpec

EASTRON_SDM630 = Profile(
    name="eastron-sdm630",
    manufacturer="Eastron",
    model="SDM630 (Modbus)",
    table="input",
    source="Eastron SDM630 Modbus protocol; sources [D1, D2, D3]. FC04, float32, high word first.",
    points=(
        P("voltage_l1_n", 0x0000, "float32"),
        P("voltage_l2_n", 0x0002, "float32"),
        P("voltage_l3_n", 0x0004, "float32"),
        P("current_l1", 0x0006, "float32"),
        P("current_l2", 0x0008, "float32"),
        P("current_l3", 0x000A, "float32"),
        P("active_power_l1", 0x000C, "float32", 0.001),  # W -> kW
        P("active_power_l2", 0x000E, "float32", 0.001),
        P("active_power_l3", 0x0010, "float32", 0.001),
        P("active_power", 0x0034, "float32", 0.001),
        P("power_factor", 0x003E, "float32"),
        P("frequency", 0x0046, "float32"),
        P("active_energy_import", 0x0048, "float32"),  # kWh
        P("active_energy_export", 0x004A, "float32"),
        P("demand_active_power", 0x0054, "float32", 0.001),
    ),
    notes="Energy is float32 kWh: resolution is 0.0625 kWh at 10^6 kWh and 1 kWh at 10^7 kWh (§7.1).",
)

SIEMENS_PAC3200 = Profile(
    name="siemens-pac3200",
    manufacturer="Siemens",
    model="SENTRON PAC3200 / PAC2200",
    table="input",
    source="Siemens PAC3200 manual, offsets used as PDU addresses; sources [D4-D6].",
    points=(
        P("voltage_l1_n", 1, "float32"),
        P("voltage_l2_n", 3, "float32"),
        P("voltage_l3_n", 5, "float32"),
        P("current_l1", 13, "float32"),
        P("current_l2", 15, "float32"),
        P("current_l3", 17, "float32"),
        P("active_power_l1", 25, "float32", 0.001),
        P("active_power_l2", 27, "float32", 0.001),
        P("active_power_l3", 29, "float32", 0.001),
        P("frequency", 55, "float32"),
        P("apparent_power", 63, "float32", 0.001),  # VA -> kVA
        P("active_power", 65, "float32", 0.001),
        P("reactive_power", 67, "float32", 0.001),  # var -> kvar
        P("power_factor", 69, "float32"),
        P("demand_active_power", 501, "float32", 0.001),
        P("active_energy_import_t1", 801, "float64", 0.001, quantity=None),  # Wh -> kWh
        P("active_energy_import_t2", 805, "float64", 0.001, quantity=None),
        P("active_energy_export_t1", 809, "float64", 0.001, quantity=None),
        P("active_energy_export_t2", 813, "float64", 0.001, quantity=None),
    ),
    derived=(
        DerivedSpec("active_energy_import", ("active_energy_import_t1", "active_energy_import_t2")),
        DerivedSpec("active_energy_export", ("active_energy_export_t1", "active_energy_export_t2")),
    ),
)

SCHNEIDER_PM5000 = Profile(
    name="schneider-pm5xxx",
    manufacturer="Schneider Electric",
    model="PowerLogic PM5xxx (PM2xxx, EM6400 share the numbering)",
    table="holding",
    source="Schneider PM5000 register list, PDU address = register - 1; sources [D7, D8].",
    points=(
        P("current_l1", 2999, "float32"),
        P("current_l2", 3001, "float32"),
        P("current_l3", 3003, "float32"),
        P("voltage_l1_n", 3027, "float32"),
        P("voltage_l2_n", 3029, "float32"),
        P("voltage_l3_n", 3031, "float32"),
        P("active_power_l1", 3053, "float32"),  # kW
        P("active_power_l2", 3055, "float32"),
        P("active_power_l3", 3057, "float32"),
        P("active_power", 3059, "float32"),
        P("reactive_power", 3067, "float32"),  # kvar
        P("frequency", 3109, "float32"),
        P("active_energy_import", 3203, "int64", 0.001),  # Wh -> kWh (delivered)
        P("active_energy_export", 3207, "int64", 0.001),  # received
        P("demand_active_power", 3765, "float32"),
    ),
    notes="Power factor uses the 4Q_FP_PF encoding [D19] and is not read by this profile.",
)

JANITZA_UMG96RME = Profile(
    name="janitza-umg96rm-e",
    manufacturer="Janitza",
    model="UMG 96RM-E",
    table="holding",
    source="Janitza UMG 96RM-E Modbus address list; sources [D10]. FC03 float32.",
    points=(
        P("voltage_l1_n", 19000, "float32"),
        P("voltage_l2_n", 19002, "float32"),
        P("voltage_l3_n", 19004, "float32"),
        P("current_l1", 19012, "float32"),
        P("current_l2", 19014, "float32"),
        P("current_l3", 19016, "float32"),
        P("active_power_l1", 19020, "float32", 0.001),
        P("active_power_l2", 19022, "float32", 0.001),
        P("active_power_l3", 19024, "float32", 0.001),
        P("active_power", 19026, "float32", 0.001),
        P("reactive_power", 19042, "float32", 0.001),  # sum L1-L3, var -> kvar
        P("frequency", 19050, "float32"),
        P("active_energy_import", 19068, "float32", 0.001),  # Wh -> kWh; direction per §7.4, check per site
        P("active_energy_export", 19076, "float32", 0.001),
    ),
    notes="19068/19076 are the two directions of real energy; OpenEMS swaps them for inverted meters (§7.4).",
)

_ABB_NA = ((1 << 32) - 1, (1 << 64) - 1, 0xFFFF, 0x7FFF, 0x7FFFFFFF, 0x7FFFFFFFFFFFFFFF)
ABB_B_SERIES = Profile(
    name="abb-b-series",
    manufacturer="ABB",
    model="A/B-series (B23/B24), EQ meters",
    table="holding",
    source="ABB A/B-series Modbus map; sources [D12]. FC03, scaled integers; all-FF = not available.",
    points=(
        P("voltage_l1_n", 0x5B00, "uint32", 0.1, not_available=_ABB_NA),
        P("voltage_l2_n", 0x5B02, "uint32", 0.1, not_available=_ABB_NA),
        P("voltage_l3_n", 0x5B04, "uint32", 0.1, not_available=_ABB_NA),
        P("current_l1", 0x5B0C, "uint32", 0.01, not_available=_ABB_NA),
        P("current_l2", 0x5B0E, "uint32", 0.01, not_available=_ABB_NA),
        P("current_l3", 0x5B10, "uint32", 0.01, not_available=_ABB_NA),
        P("active_power", 0x5B14, "int32", 0.00001, not_available=_ABB_NA),  # 0.01 W -> kW
        P("frequency", 0x5B2C, "uint16", 0.01, not_available=_ABB_NA),
        P("power_factor", 0x5B3A, "int16", 0.001, not_available=_ABB_NA),
        P("active_energy_import", 0x5000, "uint64", 0.01, not_available=_ABB_NA),  # 0.01 kWh
        P("active_energy_export", 0x5004, "uint64", 0.01, not_available=_ABB_NA),
    ),
)

GENERIC_EM_U32 = Profile(
    name="generic-em-u32",
    manufacturer="generic",
    model="Energy meter with 32-bit energy registers (legacy and low-cost class)",
    table="holding",
    source="carbonedge generic map in the scaled-integer style of the ABB map [D12], but with uint32 energy in 0.01 kWh, "
    "which wraps at 42,949,672.95 kWh (§7.6, calc). FC03, high word first.",
    points=(
        P("voltage_l1_n", 0, "uint32", 0.1),
        P("voltage_l2_n", 2, "uint32", 0.1),
        P("voltage_l3_n", 4, "uint32", 0.1),
        P("current_l1", 6, "uint32", 0.001),  # mA -> A
        P("current_l2", 8, "uint32", 0.001),
        P("current_l3", 10, "uint32", 0.001),
        P("active_power", 12, "int32", 0.001),  # W -> kW
        P("reactive_power", 14, "int32", 0.001),  # var -> kvar
        P("power_factor", 16, "int16", 0.001),
        P("frequency", 17, "uint16", 0.01),
        P("active_energy_import", 256, "uint32", 0.01),  # 0.01 kWh, rolls over
        P("active_energy_export", 258, "uint32", 0.01),
        P("demand_active_power", 260, "int32", 0.001),
    ),
    notes="The energy registers roll over at 2**32 x 0.01 kWh; readers must unwrap (counter_modulus).",
)


def _flow_meter(medium: str, flow: str, total: str, total_scale: float, total_unit: str) -> Profile:
    return Profile(
        name=f"flow-{medium}",
        manufacturer="generic",
        model=f"Flow meter / flow computer ({medium})",
        table="holding",
        source="carbonedge generic flow-meter map: float32 flow in the canonical unit per hour at 0, uint32 totalizer "
        f"in {total_scale:g} {total_unit} at 2, high word first (FC03); the layout of common flow computers (†).",
        points=(P(flow, 0, "float32"), P(total, 2, "uint32", total_scale)),
        notes=f"The totalizer wraps at {(1 << 32) * total_scale:,.0f} {total_unit}.",
    )


#: Flow meters for the other media plant energy systems monitor (gas, oxygen, steam, water, compressed air).
FLOW_GAS = _flow_meter("gas", "gas_flow", "gas_volume", 0.1, "Nm3")
FLOW_OXYGEN = _flow_meter("oxygen", "oxygen_flow", "oxygen_volume", 0.1, "Nm3")
FLOW_STEAM = _flow_meter("steam", "steam_flow", "steam_mass", 0.001, "t")
FLOW_WATER = _flow_meter("water", "water_flow", "water_volume", 0.01, "m3")
FLOW_AIR = _flow_meter("air", "air_flow", "air_volume", 0.1, "Nm3")

PLC_LINE_COUNTER = Profile(
    name="plc-line-counter",
    manufacturer="generic",
    model="PLC production counter block (one Modbus unit id per line)",
    table="holding",
    source="carbonedge convention for PLC counter blocks: uint32 counters, high word first.",
    points=(
        P("production_mass", 0, "uint32", 0.001),  # kg -> t, wraps at 4,294,967.296 t
        P("production_count", 2, "uint32"),
        P("production_capacity", 4, "uint32", 0.001),  # Wh of cell capacity -> kWh
        P("running", 6, "uint16"),
    ),
)

GENERIC_WEATHER_TH = Profile(
    name="generic-weather-th",
    manufacturer="generic",
    model="Outdoor temperature / humidity transmitter (weather station on the gateway)",
    table="input",
    source="carbonedge generic map in the style of common Modbus temperature/humidity transmitters: int16 in 0.1 units "
    "(negative temperatures two's complement), FC04: temperature °C at 0, relative humidity % at 1, dew point °C at 2.",
    points=(
        P("outdoor_temperature", 0, "int16", 0.1),
        P("outdoor_humidity", 1, "int16", 0.1),
        P("outdoor_dew_point", 2, "int16", 0.1),
    ),
    notes="Dew point is over water (Magnus formula, WMO-No. 8 Annex 4.B coefficients), as transmitters compute it from T and RH.",
)

PROFILES: dict[str, Profile] = {
    p.name: p for p in (EASTRON_SDM630, SIEMENS_PAC3200, SCHNEIDER_PM5000, JANITZA_UMG96RME, ABB_B_SERIES, PLC_LINE_COUNTER,
                        GENERIC_EM_U32, FLOW_GAS, FLOW_OXYGEN, FLOW_STEAM, FLOW_WATER, FLOW_AIR, GENERIC_WEATHER_TH)
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown meter profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None
