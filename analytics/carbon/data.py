"""Metered data for carbon accounting and plant models: load from InfluxDB or from a CSV export, then bin.

Counters (energy, gas volume, production) are turned into consumption per bin by
interpolating the counted cumulative increase (:func:`corrected_cumulative`, the kernel's counter
arithmetic) at the bin edges, so a bin's
figure never depends on where the polls happened to fall, and the bins of a
period always add up to the counter's total increase over that period.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from carbonedge.analytics.influx import InfluxReader
from carbonedge import energy
from carbonedge.clock import iso
from carbonedge.errors import ConfigError
from carbonedge.plant import PlantModel
from carbonedge.influx import quote_ident, quote_literal

#: Counter quantities read for accounts and models, and gauges read for power-quality hints.
COUNTERS = ("active_energy_import", "active_energy_export", "reactive_energy_import", "gas_volume", "production_mass", "production_count", "production_capacity")
GAUGES = ("active_power", "power_factor", "demand_active_power", "running")
FIELDS = COUNTERS + GAUGES


@dataclass
class DeviceSeries:
    """Readings of one device: poll times (epoch seconds) and one array per quantity (NaN where absent)."""

    device: str
    t: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def has(self, quantity: str) -> bool:
        v = self.values.get(quantity)
        return v is not None and bool(np.isfinite(v).any())


@dataclass
class PlantData:
    """A plant model and the readings of its devices over ``[start, end]``."""

    plant: PlantModel
    devices: dict[str, DeviceSeries]
    start: float
    end: float
    source: str

    def __post_init__(self) -> None:
        self.plant = PlantModel.coerce(self.plant)

    @property
    def site(self) -> str:
        return self.plant.site

    def process_devices(self, process: str) -> list[str]:
        """Every metering device of ``process``: its meters and flow meters (not its production counters)."""
        return self.plant.processes[process].metering_devices()

    def counter_devices(self, process: str) -> list[str]:
        return list(self.plant.processes[process].counters)

    def production_quantity(self, process: str) -> str:
        return self.plant.production_quantity_of(process)


def _ms(t: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(t, dtype=np.float64) * 1000.0).astype(np.int64)


def corrected_cumulative(values: np.ndarray, t: np.ndarray | None = None, quantity: str | None = None) -> np.ndarray:
    """Counted increase of a counter from its first reading, at every reading (NaN where the value is missing).

    The increments are the kernel's (:mod:`carbonedge.energy`), the same as every other figure of
    the pipeline: rollovers at a meter profile's register range (for ``quantity``, or any counter
    register when it is not given) counted exactly, resets never a negative or a spike, readings out
    of order not counted twice. ``t``: reading times in epoch seconds (without them the readings
    are taken as evenly spaced, which only matters for how large a plausible increase may be).
    """
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    out = np.full(v.shape, np.nan)
    if not ok.any():
        return out
    tt = _ms(t[ok]) if t is not None else np.flatnonzero(ok).astype(np.int64) * 60_000
    spec = energy.CounterSpec.for_quantity(quantity) if quantity else energy.CounterSpec(moduli=energy.profile_moduli())
    out[ok] = energy.increments(tt, v[ok], spec).cumulative()
    return out


def bin_counter(t: np.ndarray, values: np.ndarray, edges: np.ndarray, quantity: str | None = None) -> np.ndarray:
    """Consumption of a cumulative counter in each bin between consecutive ``edges`` (epoch seconds)."""
    cum = corrected_cumulative(values, t, quantity)
    ok = np.isfinite(cum)
    if ok.sum() < 2:
        return np.zeros(len(edges) - 1)
    # Outside the readings the counter is flat: np.interp clamps, so no energy is invented there.
    c = np.interp(edges, t[ok], cum[ok])
    return np.diff(c)


def bin_gauge(t: np.ndarray, values: np.ndarray, edges: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean of a gauge in each bin (optionally weighted); NaN for bins without readings."""
    ok = np.isfinite(values)
    t, v = t[ok], values[ok]
    w = np.ones_like(v) if weights is None else np.nan_to_num(weights[ok])
    idx = np.searchsorted(edges, t, side="right") - 1
    n = len(edges) - 1
    keep = (idx >= 0) & (idx < n)
    sw = np.bincount(idx[keep], weights=w[keep], minlength=n)
    swv = np.bincount(idx[keep], weights=(w * v)[keep], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sw > 0, swv / sw, np.nan)


def edges_for(start: float, end: float, bin_s: float) -> np.ndarray:
    """Bin edges aligned to multiples of ``bin_s`` in UTC, covering ``[start, end]``."""
    first = math.floor(start / bin_s) * bin_s
    n = max(1, math.ceil((end - first) / bin_s))
    return first + bin_s * np.arange(n + 1, dtype=np.float64)


#: What the energy columns of a CSV hold: a cumulative meter reading, or the consumption of each row's interval.
ENERGY_MODES = ("counter", "interval")
#: A cumulative counter falls only at a reset, a rollover or a reading out of order: falling on more than
#: this share of its rows (and on at least ``_FALLS_MIN`` rows) it is not a counter.
FALL_SHARE = 0.02
_FALLS_MIN = 5


def counter_falls(values: np.ndarray) -> tuple[int, int]:
    """``(rows where the value is below the row before, rows compared)`` of a column, missing values left out."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return 0, 0
    return int((np.diff(v) < 0).sum()), int(v.size - 1)


def _not_a_counter(falls: int, n: int) -> bool:
    return n > 0 and falls >= _FALLS_MIN and falls > FALL_SHARE * n


def check_counter(where: str, what: str, values: np.ndarray) -> None:
    """Refuse a column read as a cumulative counter that falls on a large share of its rows.

    Interval consumption read as a counter would count only the rises between rows and quietly
    give a figure far too low; a counter figure is right or refused.
    """
    falls, n = counter_falls(values)
    if _not_a_counter(falls, n):
        raise ConfigError(
            f"{where}: {what} falls on {falls:,} of {n:,} rows ({100.0 * falls / n:.0f} %), so it is not a cumulative "
            "meter reading (a counter only falls at a reset or rollover); if it holds the consumption of each row's "
            "interval, use --energy interval")


def interval_to_counter(values: np.ndarray) -> np.ndarray:
    """A cumulative reading from per-row interval consumption (missing rows count nothing and stay missing).

    Row *i*'s consumption is that of the interval ending at its time stamp. Negative consumption is refused.
    """
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    if (v[ok] < 0).any():
        raise ConfigError(f"interval consumption is negative on {int((v[ok] < 0).sum()):,} rows; export the import energy only")
    out = np.full(v.shape, np.nan)
    out[ok] = np.cumsum(v[ok])
    return out


def _read_csv(path: Path, time_col: str, cols: list[str], *, tz: str, date_format: str | None, decimal: str | None,
              announce: Callable[[str], None] | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Times and numeric columns of a CSV with :mod:`analytics.offline`'s table reading (delimiter, date
    order and decimal mark detected and announced, unless given)."""
    from carbonedge.analytics.offline import _num, _read_table, detect_decimal

    tab = _read_table(path, time_col, cols, tz=tz, date_format=date_format, delimiter=None)
    notes = list(tab.announcements)
    if decimal is None:
        try:
            decimal, note = detect_decimal(tab.cols)
        except ValueError as e:
            raise ConfigError(f"{path}: {e}") from None
        if note:
            notes.append(note)
    if announce:
        for n in notes:
            announce(f"{path.name}: {n}")
    return tab.t, {c: np.array([_num(x, decimal=decimal) for x in tab.cols[c]], dtype=np.float64) for c in cols}


#: Where an interval row's time stamp lies: at the end of its interval (the usual meter and AMR export) or its start.
STAMPS = ("end", "start")


def _counters_from(where: str, t: np.ndarray, vals: dict[str, np.ndarray], energy_mode: str,
                   names: dict[str, str] | None = None, stamps: str = "end") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The counter columns as cumulative readings: checked (``counter``) or summed from each row's consumption (``interval``).

    Interval consumption is stamped at the interval's end (``stamps="end"``) or start (``"start"``:
    the times move one interval later, to the ends): a reading of zero one (median) interval before
    the first end starts the sum, so the first row's consumption is counted too.
    """
    if energy_mode not in ENERGY_MODES:
        raise ConfigError(f"--energy {energy_mode!r}: use counter (cumulative meter readings) or interval (consumption per row)")
    if stamps not in STAMPS:
        raise ConfigError(f"--stamps {stamps!r}: use end (a row's time is the end of its interval) or start")
    out = dict(vals)
    present = [q for q in COUNTERS if q in out]
    if energy_mode == "counter":
        for q in present:
            check_counter(where, (names or {}).get(q, q), out[q])
        return t, out
    for q in present:
        out[q] = interval_to_counter(out[q])
    if present and t.size > 1:
        step = float(np.median(np.diff(t)))
        if stamps == "start":
            t = t + step
        t = np.concatenate([[t[0] - step], t])
        out = {q: np.concatenate([[0.0 if q in present else np.nan], v]) for q, v in out.items()}
    return t, out


def from_csv_dir(path: Path, *, start: float | None = None, end: float | None = None, energy_mode: str = "counter", tz: str = "UTC",
                 stamps: str = "end", date_format: str | None = None, decimal: str | None = None,
                 announce: Callable[[str], None] | None = None) -> PlantData:
    """Load an offline export: ``plant.json`` and one ``<device>.csv`` per device (``ts`` column, ISO 8601 or epoch).

    ``energy_mode``: ``counter`` when the counter columns (energy, gas, production) are cumulative
    meter readings (one that falls on a large share of its rows is refused), ``interval`` when they
    hold each row's consumption, stamped at its interval's ``stamps`` (end or start). Files are read
    with the CSV helpers of :mod:`analytics.offline`.
    """
    path = Path(path)
    if path.is_file():
        raise ConfigError(f"{path} is a file: a plant export is a directory with plant.json and <device>.csv files "
                          "(for one meter's time,kWh file use from_meter_csv / report --csv FILE)")
    pj = path / "plant.json"
    if not pj.exists():
        raise ConfigError(f"{path} has no plant.json: an offline data directory needs the plant model next to the device CSV files")
    plant = PlantModel.load(pj)
    devices: dict[str, DeviceSeries] = {}
    wanted = set(plant.devices())
    lo, hi = math.inf, -math.inf
    for dev in sorted(wanted):
        f = path / f"{dev}.csv"
        if not f.exists():
            continue
        from carbonedge.analytics.offline import table_columns

        header = table_columns(f)
        if "ts" not in header:
            raise ConfigError(f"{f}: no 'ts' column; the file has: {', '.join(header)}")
        t, vals = _read_csv(f, "ts", [q for q in FIELDS if q in header], tz=tz, date_format=date_format, decimal=decimal, announce=announce)
        if not t.size:
            continue
        t, vals = _counters_from(str(f), t, vals, energy_mode, stamps=stamps)
        sel = np.ones(t.size, dtype=bool)
        if start is not None:
            sel &= t >= start
        if end is not None:
            sel &= t <= end
        devices[dev] = DeviceSeries(dev, t[sel], {q: v[sel] for q, v in vals.items()})
        if sel.any():
            lo, hi = min(lo, float(t[sel][0])), max(hi, float(t[sel][-1]))
    if not devices:
        raise ConfigError(f"{path}: none of the devices in plant.json has a CSV file with readings")
    return PlantData(plant, devices, start if start is not None else lo, end if end is not None else hi, f"CSV export {path}")


_TIME_NAMES = ("ts", "time", "timestamp", "datetime", "date", "zeit", "datum")


def from_meter_csv(path: Path, *, energy_mode: str | None = None, time_col: str | None = None, value_col: str | None = None,
                   site: str | None = None, start: float | None = None, end: float | None = None, tz: str = "UTC",
                   announce: Callable[[str], None] | None = None, stamps: str = "end", date_format: str | None = None,
                   decimal: str | None = None) -> PlantData:
    """One meter's electricity from a plain CSV (``time,kWh``): a one-process plant, no plant model needed.

    The time column is ``time_col`` or the one named like a time (``ts``, ``time``, ``timestamp`` …),
    else the first; the energy column is ``value_col`` or the only other column. ``energy_mode``:
    ``interval`` (each row's consumption, stamped at the interval's ``stamps``: end or start) or ``counter`` (a
    cumulative reading). Without it the column decides, and ``announce`` is told: one that falls on a
    large share of its rows is interval consumption, one that never falls a cumulative reading;
    anything between is refused with the question.
    """
    from carbonedge.analytics.offline import table_columns

    path = Path(path)
    header = [h for h in table_columns(path) if h is not None]
    tc = time_col or next((h for h in header if h.strip().lower() in _TIME_NAMES), header[0] if header else None)
    if tc is None or tc not in header:
        raise ConfigError(f"{path}: no time column {tc!r}; the file has: {', '.join(header)}")
    others = [h for h in header if h != tc]
    if value_col is None:
        if len(others) != 1:
            raise ConfigError(f"{path}: {len(others)} columns besides the time {tc!r} ({', '.join(others)}); say which holds the "
                              "energy in kWh with --value-col")
        value_col = others[0]
    if value_col not in header:
        raise ConfigError(f"{path}: no column {value_col!r}; the file has: {', '.join(header)}")
    t, cols = _read_csv(path, tc, [value_col], tz=tz, date_format=date_format, decimal=decimal, announce=announce)
    v = cols[value_col]
    ta, va = np.array(t, dtype=np.float64), np.array(v, dtype=np.float64)
    if int(np.isfinite(va).sum()) < 2:
        raise ConfigError(f"{path}: fewer than two numbers in column {value_col!r}")
    if np.any(np.diff(ta) < 0):
        order = np.argsort(ta, kind="stable")
        ta, va = ta[order], va[order]
        if announce:
            announce(f"{path.name}: rows are not in time order; read in time order")
    falls, n = counter_falls(va)
    if energy_mode is None:
        if _not_a_counter(falls, n):
            energy_mode = "interval"
        elif falls == 0:
            energy_mode = "counter"
        else:
            raise ConfigError(f"{path}: {value_col!r} falls on {falls:,} of {n:,} rows: too few for interval consumption, too many to be "
                              "sure it is a cumulative reading; say which with --energy interval or --energy counter")
        if announce:
            what = ("interval consumption (kWh per row; it falls on {:.0f} % of rows)".format(100.0 * falls / n) if energy_mode == "interval"
                    else "a cumulative meter reading (it never falls)")
            announce(f"{path.name}: {value_col!r} read as {what}; give --energy to say otherwise")
    ta, vals = _counters_from(str(path), ta, {"active_energy_import": va}, energy_mode, {"active_energy_import": f"column {value_col!r}"}, stamps)
    sel = np.ones(ta.size, dtype=bool)
    if start is not None:
        sel &= ta >= start
    if end is not None:
        sel &= ta <= end
    if sel.sum() < 2:
        raise ConfigError(f"{path}: fewer than two readings between the given times")
    # The file's name becomes the meter's id (and the site's, without --site): letters, digits, '_', '.', '-'.
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-._")[:64] or "meter"
    meter = name
    plant = PlantModel.from_dict({"site": site or name, "plant": "meter", "output_process": None,
                                  "processes": {"site": {"area": "site", "meters": [meter], "counters": []}}}, f"--site {site}" if site else str(path))
    ds = DeviceSeries(meter, ta[sel], {"active_energy_import": vals["active_energy_import"][sel]})
    return PlantData(plant, {meter: ds}, float(ta[sel][0]) if start is None else start, float(ta[sel][-1]) if end is None else end,
                     f"CSV file {path} (one meter, {energy_mode} energy in column {value_col!r})")


def from_influx(reader: InfluxReader, plant: PlantModel | dict[str, Any], start: float, end: float, *, chunk_s: float = 86400.0) -> PlantData:
    """Load the readings of the plant's devices over ``[start, end]`` (epoch seconds) from InfluxDB, a day per query."""
    plant = PlantModel.coerce(plant)
    site = plant.site
    cols = ", ".join(quote_ident(q) for q in FIELDS)
    acc: dict[str, dict[str, list[Any]]] = {}
    t0 = start
    while t0 <= end:
        t1 = min(t0 + chunk_s, end)
        op = "<=" if t1 >= end else "<"
        q = (f"SELECT {cols} FROM \"readings\" WHERE site = {quote_literal(site)} AND time >= {int(t0 * 1000)}ms "
             f"AND time {op} {int(t1 * 1000)}ms GROUP BY \"device\"")
        for s in reader.query(q):
            dev = s.get("tags", {}).get("device", "")
            a = acc.setdefault(dev, {c: [] for c in s["columns"]})
            for i, c in enumerate(s["columns"]):
                a.setdefault(c, []).extend(row[i] for row in s["values"])
        if t1 >= end:
            break
        t0 = t1
    devices: dict[str, DeviceSeries] = {}
    for dev, a in acc.items():
        t = np.array(a["time"], dtype=np.float64) / 1000.0
        vals = {q: np.array([np.nan if x is None else float(x) for x in a[q]]) for q in FIELDS if q in a}
        devices[dev] = DeviceSeries(dev, t, vals)
    if not devices:
        raise ConfigError(f"no readings for site {site!r} between {iso(start)} and {iso(end)} in InfluxDB database {reader.database!r}")
    return PlantData(plant, devices, start, end, f"InfluxDB {reader.url} database {reader.database}, site {site}")

