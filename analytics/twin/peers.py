"""Peer comparison of meters doing the same job: formation racks metered one by one.

A formation channel that burns its discharge energy instead of returning it adds a few kWh
per cycle to one rack: far below what a hall meter can resolve in a hall drawing thousands of
kWh a day (class 0.5S to 1 meters, IEC 62053-21/22 [D14, D15]). A meter per rack cabinet (or the cyclers'
own DC energy) sees it, and the other racks running the same protocol are the reference that
cancels what moves the whole hall (throughput, recipe mix, ambient).

How a rack is judged:

1. **Net energy per rack**: import minus export (a rack that recovers its discharge energy
   exports it), in 15-min bins.
2. **Cycle length** of each rack: the lag at which its power repeats (autocorrelation, 2 h to
   48 h; the hall's, from the mean over the racks, where a rack shows none, and a day where the
   hall shows none either). Energy over a window of one cycle does not depend on where in its
   protocol a rack is, so racks started at different times or on recipes of different length
   compare like for like.
3. **Own level**: each rack's median energy per cycle while working in the baseline period, so a
   rack with fewer cells, another cell format or another recipe is judged against itself. A rack
   is working when its window energy is at least half of its usual working level (the 90th
   percentile of its windows); racks idle for maintenance or between lots are not judged while
   idle, and racks that never worked in the baseline period have no level and are not judged.
4. **Peers**: at each window end, the median of the *other* working racks' energy, each on its own
   level, is what moves the whole hall; a rack's deviation is its own energy on its level against
   that median. Only a rise counts: a rack doing less is not a fault.
5. **Outlier**: a rise above the reference, in units of the comparison's own scatter (median
   absolute deviation over all racks and windows, so the threshold follows the plant's data),
   that lasts at least one cycle and averages at least ``z``.
6. **Waste**: the rack's net energy over whole cycles covering the rise, minus its own level
   times the median number of level-cycles its peers ran over the same span.

A rise can also be a legitimate change (larger cells or a longer recipe on that rack); the hint
says to check that first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carbonedge.analytics.carbon.data import PlantData, bin_counter, edges_for

#: Fewest metered racks in a group for a peer median to mean anything (the rack itself and at least three peers).
MIN_RACKS = 4
BIN_S = 900.0
#: A rack is working in a window when its energy is at least this share of its usual working level.
WORKING_SHARE = 0.5
#: Least relative scatter assumed between two racks' cycle energies (meter drift, register resolution; †).
SCATTER_FLOOR = 0.002


@dataclass
class RackOutlier:
    """One rack whose net energy rose above its peers (relative to its own reference) over a sustained stretch."""

    device: str
    start: float  # the whole cycles of the rack the waste is counted over (epoch s); the rise itself is in details
    end: float
    waste_kwh: float
    expected_kwh: float  # what the rack would have used on its own level, running as its peers did over the same span
    z: float  # mean rise over the stretch in units of the comparison's scatter
    reference_kwh_per_cycle: float  # the rack's own net energy per cycle in the baseline period
    peers: int
    cycle_h: float
    ongoing: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class PeerResult:
    devices: list[str]
    cycle_h: float
    scatter: float  # robust relative scatter of a rack against its peers (1 = 100 %)
    outliers: list[RackOutlier]
    notes: list[str]


def metered_racks(data: PlantData, process: str) -> list[str]:
    """The process's devices with an energy counter and readings (its rack meters when it has several)."""
    out = []
    for dev in data.process_devices(process):
        ds = data.devices.get(dev)
        if ds is not None and ds.has("active_energy_import"):
            out.append(dev)
    return out


def _net_energy(data: PlantData, devices: list[str], edges: np.ndarray) -> np.ndarray:
    """Net energy (import minus export) of each device in each bin, kWh; shape (devices, bins)."""
    e = np.zeros((len(devices), len(edges) - 1))
    for k, dev in enumerate(devices):
        ds = data.devices[dev]
        e[k] = bin_counter(ds.t, ds.values["active_energy_import"], edges, "active_energy_import")
        if ds.has("active_energy_export"):
            e[k] -= bin_counter(ds.t, ds.values["active_energy_export"], edges, "active_energy_export")
    return e


def cycle_bins(e: np.ndarray, bin_s: float = BIN_S, lo_h: float = 2.0, hi_h: float = 48.0) -> int | None:
    """Bins per cycle: the lag where the racks' energy repeats best (mean autocorrelation), or None."""
    n = e.shape[1]
    lo, hi = round(lo_h * 3600 / bin_s), min(round(hi_h * 3600 / bin_s), n // 2)
    if hi <= lo:
        return None
    x = e - e.mean(axis=1, keepdims=True)
    var = (x * x).sum(axis=1)
    keep = var > 0
    if not keep.any():
        return None
    x, var = x[keep], var[keep]
    acf = np.array([float(np.mean((x[:, :-lag] * x[:, lag:]).sum(axis=1) / var)) for lag in range(lo, hi + 1)])
    best = float(acf.max())
    if best < 0.3:
        return None
    # The first peak close to the best: multiples of the cycle repeat it as well.
    i = int(np.flatnonzero(acf >= best - 0.05)[0])
    while i + 1 < acf.size and acf[i + 1] > acf[i]:
        i += 1
    return lo + i


def compare_racks(data: PlantData, process: str, baseline: tuple[float, float], *, z: float = 4.0,
                  bin_s: float = BIN_S) -> PeerResult | None:
    """Judge each metered rack of ``process`` against its peers; None when the process has fewer than MIN_RACKS meters."""
    devices = metered_racks(data, process)
    if len(devices) < MIN_RACKS:
        return None
    notes: list[str] = []
    edges = edges_for(data.start, data.end, bin_s)
    # Whole bins only: a partial first or last bin would look like a rack doing less.
    edges = edges[(edges >= data.start) & (edges <= data.end)]
    if len(edges) < 3:
        return None
    e = _net_energy(data, devices, edges)
    nk, nb = e.shape
    cyc = cycle_bins(e, bin_s)
    if cyc is None:
        cyc = round(86400 / bin_s)
        notes.append(f"{process}: no common cycle found in the rack meters; racks compared over daily windows.")
    cycle_h = cyc * bin_s / 3600.0
    if nb < 2 * cyc:
        notes.append(f"{process}: {nb * bin_s / 3600:.0f} h of rack data is less than two {cycle_h:.1f} h cycles; racks not compared.")
        return PeerResult(devices, cycle_h, math.nan, [], notes)
    # Each rack on its own cycle (recipes differ from rack to rack); the hall's where a rack shows none.
    cycles = np.array([cycle_bins(e[k:k + 1], bin_s) or cyc for k in range(nk)])
    # Window sums over the rack's cycle, by window end: win[k, m] covers bins [m - cycles[k], m).
    c = np.concatenate([np.zeros((nk, 1)), np.cumsum(e, axis=1)], axis=1)
    win = np.full((nk, nb + 1), np.nan)
    for k in range(nk):
        win[k, cycles[k]:] = c[k, cycles[k]:] - c[k, :nb + 1 - cycles[k]]
    t_end = edges
    with np.errstate(invalid="ignore"):
        usual = np.nanpercentile(win, 90, axis=1)
        working = (win >= WORKING_SHARE * usual[:, None]) & (usual[:, None] > 0)
    start_of = t_end[None, :] - cycles[:, None] * bin_s
    in_base = np.isfinite(win) & (start_of >= baseline[0] - 1e-6) & (t_end[None, :] <= baseline[1] + 1e-6)
    if not in_base.any():
        notes.append(f"{process}: the baseline period is shorter than one {cycle_h:.1f} h formation cycle; racks not compared.")
        return PeerResult(devices, cycle_h, math.nan, [], notes)
    # Each rack's own level: its median energy per cycle while working in the baseline period.
    level = np.full(nk, np.nan)
    for k in range(nk):
        wb = win[k, in_base[k] & working[k]]
        if wb.size:
            level[k] = float(np.median(wb))
    unjudged = [devices[k] for k in range(nk) if not np.isfinite(level[k])]
    if unjudged:
        notes.append(f"{process}: {len(unjudged)} rack(s) not working in a whole cycle of the baseline period, so without a reference "
                     "and not judged: " + ", ".join(unjudged[:5]) + (" …" if len(unjudged) > 5 else "") + ".")
    with np.errstate(all="ignore"):
        norm = np.where(working & np.isfinite(level)[:, None], win / level[:, None], np.nan)
    # What moves the whole hall at each window end: the median of the other working racks, each on its own level.
    common = np.full(win.shape, np.nan)
    for k in range(nk):
        others = np.delete(norm, k, axis=0)
        ok = np.isfinite(others).sum(axis=0) >= MIN_RACKS - 1
        if ok.any():
            common[k, ok] = np.nanmedian(others[:, ok], axis=0)
    with np.errstate(all="ignore"):
        d = norm / common - 1.0
    pool = d[np.isfinite(d)]
    if pool.size < 10:
        notes.append(f"{process}: too few working rack windows to compare racks.")
        return PeerResult(devices, cycle_h, math.nan, [], notes)
    scatter = float(1.4826 * np.median(np.abs(pool - np.median(pool))))
    # Racks that look identical still differ by their meters' drift with temperature and load and by
    # register resolution: a rise is judged against at least 0.2 % (†) of a cycle's energy.
    scatter = max(scatter, SCATTER_FLOOR)
    outliers = []
    after = t_end > baseline[1]
    for k in range(nk):
        if not np.isfinite(level[k]):
            continue
        with np.errstate(invalid="ignore"):
            zk = d[k] / scatter
            hit = np.isfinite(zk) & (zk >= z / 2) & after
        for i, j in _runs(hit):
            if j - i < cycles[k]:  # a persistent fault shows in every window for at least one cycle
                continue
            zm = float(np.nanmean(zk[i:j]))
            if zm < z:
                continue
            o = _waste(devices, k, e, working, level, cycles, d[k], edges, int(i), int(j), bin_s)
            if o is None or o.waste_kwh <= 0:
                continue
            o.z = zm
            outliers.append(o)
    return PeerResult(devices, cycle_h, scatter, outliers, notes)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs [i, j) of True in ``mask``."""
    m = np.concatenate([[False], mask, [False]]).astype(int)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def _waste(devices: list[str], k: int, e: np.ndarray, working: np.ndarray, level: np.ndarray, cycles: np.ndarray,
           dk: np.ndarray, edges: np.ndarray, i: int, j: int, bin_s: float) -> RackOutlier | None:
    """Excess of rack ``k`` over the bins behind its windows ending at edges i .. j-1, widened to its whole cycles."""
    nb = e.shape[1]
    cyc = int(cycles[k])
    b0, b1 = max(0, i - cyc), j - 1  # bins [b0, b1) feed the windows ending at i .. j-1
    n = b1 - b0
    pad = (-n) % cyc
    b0 = max(0, b0 - pad // 2)
    b1 = min(nb, b0 + n + pad)
    b0 = max(0, b1 - n - pad)
    if (b1 - b0) % cyc:  # the data ends too soon on both sides: drop the part cycle at the start
        b0 = b0 + (b1 - b0) % cyc
    if b1 <= b0:
        return None
    # Peers working in every window that lies within the span.
    peers = [p for p in range(len(devices)) if p != k and np.isfinite(level[p])
             and working[p, min(b0 + int(cycles[p]), b1):b1 + 1].all()]
    if len(peers) < MIN_RACKS - 1:
        return None
    own = float(e[k, b0:b1].sum())
    # The excess entered the first window above its peers in its last bin, and had left the last such
    # window but for its first bin (unless that window ends with the data: still going).
    ongoing = j >= len(edges) - 1
    rise_from = float(edges[i] - bin_s)
    rise_to = float(edges[-1]) if ongoing else max(rise_from + bin_s, float(edges[j - 1] - (cyc - 1) * bin_s))
    # The rack's own rate (level per cycle) times how its peers ran over the span against their own rates.
    rate = level / cycles
    run = np.median(e[peers, b0:b1].sum(axis=1) / (rate[peers] * (b1 - b0)))
    expected = float(rate[k] * (b1 - b0) * run)
    # The baseline may hold only a cycle or two: where the rack ran outside the span (before it and,
    # for an episode that ended, after it), its usual deviation from its peers refines its level.
    ends = np.arange(dk.size)
    outside = np.isfinite(dk) & ((ends <= b0) | (ends - cyc >= b1))
    adj = 1.0
    if outside.sum() >= cyc // 2:
        adj = 1.0 + float(np.median(dk[outside]))
        expected *= adj
    return RackOutlier(device=devices[k], start=float(edges[b0]), end=float(edges[b1]), waste_kwh=own - expected,
                       expected_kwh=expected, z=math.nan, reference_kwh_per_cycle=float(level[k]), peers=len(peers),
                       cycle_h=cyc * bin_s / 3600.0, ongoing=bool(ongoing),
                       details={"own_kwh": own, "cycles": int((b1 - b0) // cyc), "level_adjustment": adj,
                                "rise_from": rise_from, "rise_to": rise_to})
