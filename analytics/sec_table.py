"""Plain-text tables for the terminal: energy, production and SEC per process (`carbonedge analyze sec`, the demo)."""

from __future__ import annotations

from typing import Any


def _fmt(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def sec_table(figs: dict[str, Any], truth: dict[str, Any] | None = None) -> str:
    """Energy, production and SEC per process; with ``truth``, the simulator's figures beside them."""
    unit = figs["sec_unit"]
    head = ["process", "energy kWh", "production", f"SEC {unit}"] + (["true SEC", "error"] if truth else [])
    rows = []
    for name, p in figs["processes"].items():
        prod = f"{_fmt(p['production'])} {p['production_unit']}" if p["production"] is not None else "—"
        row = [name, _fmt(p["energy_kwh"], 0), prod, _fmt(p["sec"], 2)]
        if truth:
            t = truth["processes"].get(name, {})
            row += [_fmt(t.get("truth_sec"), 2), _pct(p["sec"], t.get("truth_sec"))]
        rows.append(row)
    # The plant's output unit is what its SEC is per: "kWh/t" -> "t", "kWh/kWh_cell" -> "kWh_cell".
    out_unit = unit.split("/", 1)[1] if "/" in unit else ""
    plant = ["PLANT", _fmt(figs["plant_energy_kwh"], 0), f"{_fmt(figs['plant_production'])} {out_unit}".rstrip() if figs.get("plant_production") else "—",
             _fmt(figs["plant_sec"], 2)]
    if truth:
        plant += [_fmt(truth.get("plant_truth_sec"), 2), _pct(figs["plant_sec"], truth.get("plant_truth_sec"))]
    rows.append(plant)
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))), line]
    for r in rows:
        if r[0] == "PLANT":
            out.append(line)
        out.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


def _pct(v: float | None, ref: float | None) -> str:
    if v is None or not ref:
        return "—"
    return f"{100 * (v - ref) / ref:+.3f} %"
