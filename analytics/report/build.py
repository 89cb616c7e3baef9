"""``carbonedge report``: carbon accounts, footprints, regulatory exports and ranked hints, as HTML and JSON.

The HTML is self-contained (inline CSS and SVG plots, no scripts, no network), so it
can be mailed to a verifier or opened on a plant PC without internet. ``report.json``
holds every figure behind it, with the factor versions and data source.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from carbonedge.analytics.carbon.accounts import Accounts, compute_accounts
from carbonedge.analytics.carbon.data import PlantData
from carbonedge.analytics.carbon.footprint import footprints
from carbonedge.analytics.carbon import sources
from carbonedge.analytics.carbon.settings import Settings
from carbonedge.analytics.report import plots
from carbonedge.analytics.report.exports import html_section, regulatory_documents, validate
from carbonedge.analytics.twin.hints import TwinResult, analyse
from carbonedge.analytics.twin.model import last_batch_count
from carbonedge.clock import iso

Progress = Callable[[str], None]


@dataclass
class ReportResult:
    """Where the report went and its key figures."""

    html: Path
    json: Path
    exports: list[Path]
    report: dict[str, Any]


def build_report(data: PlantData, settings: Settings, out_dir: Path, *, baseline: tuple[float, float] | None = None,
                 progress: Progress | None = None, influx_write: Callable[[Accounts], int] | None = None) -> ReportResult:
    """Compute everything for ``data`` and write ``report.html``, ``report.json`` and the exports into ``out_dir``."""
    say = progress or (lambda _m: None)
    t0 = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    span_h = (data.end - data.start) / 3600.0
    say(f"[1/5] Carbon accounts for {data.site}, {iso(data.start)} to {iso(data.end)} ({span_h:,.0f} h) ...")
    acc = compute_accounts(data, settings)
    written = influx_write(acc) if influx_write else None
    if written is not None:
        say(f"      {written:,} hourly CO2 points written to InfluxDB (measurement carbon)")
    say("[2/5] Product footprints ...")
    fps = footprints(acc, settings, data.plant)
    say("[3/5] Regulatory exports ...")
    exports, paths = regulatory_documents(data, acc, fps, settings, out_dir, say)
    say("[4/5] Calibrating process models and ranking optimisation hints ...")
    grid = acc.factors.get(settings.carbon.grid_factor)
    twin = analyse(data, settings, grid, baseline=baseline)
    say(f"      {len(twin.hints)} hint(s); models for {len(twin.models)} process(es)")
    say("[5/5] Writing report.html and report.json ...")
    report = _report_json(data, settings, acc, fps, exports, twin, paths, written)
    validate(report, "report")
    jp = out_dir / "report.json"
    jp.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=_json_default))
    hp = out_dir / "report.html"
    hp.write_text(_html(data, settings, acc, fps, exports, twin, report))
    say(f"      {hp}  ({hp.stat().st_size / 1024:,.0f} KiB, {time.monotonic() - t0:.1f} s)")
    return ReportResult(hp, jp, paths, report)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o).__name__)


def _clean(x: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _report_json(data: PlantData, settings: Settings, acc: Accounts, fps: list[dict[str, Any]], exports: dict[str, Any],
                 twin: TwinResult, paths: list[Path], written: int | None) -> dict[str, Any]:
    a = acc.as_dict()
    tot = a["plant"]
    out_proc = data.plant.output_process
    out_prod = acc.processes[out_proc].production.sum() if out_proc in acc.processes else 0.0
    return _clean({
        "schema": "carbonedge/report/1",
        "site": data.site, "plant": data.plant.plant, "period": {"start": iso(data.start), "end": iso(data.end)},
        "generated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "data_source": data.source,
        "settings": {"defaults_used": settings.defaults_used, "grid_factor": settings.carbon.grid_factor,
                     "residual_factor": settings.carbon.residual_factor, "currency": settings.tariff.currency},
        "factor_libraries": acc.factors.versions, "factors_used": acc.factors.used_factors(),
        "emissions": {
            "scope1_t": tot["scope1_kg"] / 1000.0, "scope2_location_t": tot["scope2_location_kg"] / 1000.0,
            "scope2_market_t": tot["scope2_market_kg"] / 1000.0,
            "total_location_t": (tot["scope1_kg"] + tot["scope2_location_kg"]) / 1000.0,
            "total_market_t": (tot["scope1_kg"] + tot["scope2_market_kg"]) / 1000.0,
            "energy_kwh": tot["energy_kwh"], "gas_nm3": tot["gas_nm3"],
            "output": float(out_prod), "output_process": out_proc, "sec_unit": data.plant.sec_label,
            "by_process": a["processes"], "plant_check": a["plant_check"], "instruments": a["instruments"], "method": a["method"],
        },
        "products": fps,
        "exports": {"files": [p.name for p in paths], **exports},
        "models": {n: m.as_dict() for n, m in twin.models.items()},
        "baseline_period": [iso(twin.baseline[0]), iso(twin.baseline[1])],
        "hints": [h.as_dict() for h in twin.hints],
        "unusual_periods": unusual_hours(twin),
        "notes": twin.notes,
        "influx_points_written": written,
    })


# ----------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
header{background:#1f3a4d;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85}main{padding:8px 28px 40px;max-width:1180px}
section{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:14px 18px;margin:16px 0}
h2{font-size:17px;margin:0 0 10px;color:#1f3a4d}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0}th,td{border-bottom:1px solid #e6e9ee;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f0f3f6;font-weight:600}td.l,th.l{text-align:left}.kpis{display:flex;flex-wrap:wrap;gap:10px}
.kpi{flex:1 1 170px;background:#f0f4f8;border-radius:6px;padding:10px 12px}.kpi b{display:block;font-size:20px;color:#1f3a4d}
.kpi span{font-size:12px;color:#4a5866}.src{font-size:12px;color:#56636f}.note{font-size:12px;color:#6a4d00;background:#fff6dc;padding:6px 10px;border-radius:4px}
.conf-high{color:#1d6b35;font-weight:600}.conf-medium{color:#8a5a00;font-weight:600}.conf-low{color:#8c2f2a;font-weight:600}
svg{max-width:100%;height:auto}code{font-size:12px}
"""


def _f(v: float | None, d: int = 0) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:,.{d}f}"


def _tbl(head: list[str], rows: list[list[str]], left: int = 1) -> str:
    h = "".join(f'<th class="l">{escape(x)}</th>' if i < left else f"<th>{escape(x)}</th>" for i, x in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _html(data: PlantData, settings: Settings, acc: Accounts, fps: list[dict[str, Any]], exports: dict[str, Any],
          twin: TwinResult, rep: dict[str, Any]) -> str:
    em = rep["emissions"]
    cur = settings.tariff.currency
    libs = ", ".join(acc.factors.versions)
    grid = acc.factors.get(settings.carbon.grid_factor)
    src_line = f'<p class="src">Sources: {escape(data.source)}; emission factors {escape(libs)}; grid factor {escape(grid.cite())}.</p>'
    parts: list[str] = []
    # --- summary
    unit = data.plant.sec_label
    out = em["output"]
    kpis = [
        (f"{_f(em['total_location_t'], 1)} t CO2", "scope 1 + 2 (location-based)"),
        (f"{_f(em['total_market_t'], 1)} t CO2", "scope 1 + 2 (market-based)"),
        (f"{_f(em['energy_kwh'] / 1000, 1)} MWh", "electricity metered"),
        (f"{_f(em['energy_kwh'] / out, 1) if out else '—'} {escape(unit)}", f"plant SEC (per {escape(str(em['output_process']))} output)"),
        (f"{_f(sum(h.cost_per_year for h in twin.hints))} {cur}/yr", f"{len(twin.hints)} ranked hints"),
    ]
    kp = "".join(f'<div class="kpi"><b>{v}</b><span>{k}</span></div>' for v, k in kpis)
    defaults = ('<p class="note">No site carbon settings were given: documented defaults were used (grid factor, tariff, products). '
                "Give <code>--carbon FILE</code> for a declaration.</p>") if settings.defaults_used else ""
    parts.append(f'<section id="summary"><h2>Summary</h2><div class="kpis">{kp}</div>{defaults}{src_line}</section>')
    # --- emissions
    rows = []
    for n, p in em["by_process"].items():
        rows.append([escape(n), _f(p["energy_kwh"]), _f(p["gas_nm3"]), _f(p["production"], 1) + (f" {escape(p['production_unit'])}" if p["production_unit"] else ""),
                     _f(p["scope1_kg"] / 1000, 2), _f(p["scope2_location_kg"] / 1000, 2), _f(p["scope2_market_kg"] / 1000, 2)])
    rows.append(["<b>plant</b>", _f(em["energy_kwh"]), _f(em["gas_nm3"]), "", _f(em["scope1_t"], 2), _f(em["scope2_location_t"], 2), _f(em["scope2_market_t"], 2)])
    chk = em["plant_check"]
    names = list(em["by_process"])
    svg = plots.emissions_by_process(names, [em["by_process"][n]["scope1_kg"] for n in names], [em["by_process"][n]["scope2_location_kg"] for n in names])
    method = "".join(f"<li>{escape(m)}</li>" for m in em["method"])
    parts.append(
        '<section id="emissions"><h2>Emissions by scope and process</h2>'
        + _tbl(["process", "electricity kWh", "gas Nm3", "production", "scope 1 t", "scope 2 loc. t", "scope 2 mkt t"], rows)
        + f'<p class="src">Check: processes sum to {_f(chk["process_sum_kwh"])} kWh; meters over the whole period {_f(chk["meter_total_kwh"])} kWh '
        f'(difference {chk["difference_pct"]:+.4f} %).</p>{svg}<h3>Method and factors</h3><ul class="src">{method}</ul>{src_line}</section>')
    # --- products
    prow = []
    for fp in fps:
        st = fp["stages_kg_co2e_per_unit"]
        prow.append([escape(fp["product"]), escape(fp["declared_unit"]), _f(fp["output"], 1), _f(fp["energy_kwh_per_unit"], 1), _f(st["upstream_materials"], 1),
                     _f(st["manufacturing_scope1"], 1), _f(st["manufacturing_scope2_location"], 1), _f(fp["total_kg_co2e_per_unit_location"], 1),
                     _f(fp["total_kg_co2e_per_unit_market"], 1)])
    rules = "".join(f"<li><b>{escape(fp['product'])}</b>: {escape(fp['allocation_rule'])}. {escape(fp['boundary'])}</li>" for fp in fps)
    parts.append('<section id="products"><h2>Product carbon footprints (kg CO2e per declared unit)</h2>'
                 + _tbl(["product", "unit", "output", "kWh/unit", "materials", "scope 1", "scope 2 loc.", "total (loc.)", "total (mkt)"], prow)
                 + f'<ul class="src">{rules}</ul>{src_line}</section>')
    # --- exports
    ex = html_section(exports, _f, _tbl)
    if ex:
        parts.append('<section id="exports"><h2>Regulatory documents</h2>' + ex + src_line + "</section>")
    # --- hints
    hrows = []
    for h in twin.hints:
        hrows.append([str(h.rank), f"<b>{escape(h.title)}</b><br>{escape(h.action)}<br><span class='src'>Evidence: {escape(h.evidence)} "
                      f"Sources: {escape(', '.join(h.sources))}</span>", _f(h.kwh_per_year), _f(h.cost_per_year), _f(h.tco2_per_year, 1),
                      f'<span class="conf-{h.confidence}">{h.confidence}</span>'])
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in twin.notes)
    hint_svg = plots.hints_bar([f"{h.rank}. {h.kind}" + (f" ({h.process})" if h.process else "") for h in twin.hints],
                               [h.cost_per_year for h in twin.hints], cur) if twin.hints else ""
    parts.append('<section id="hints"><h2>Ranked optimisation hints</h2>' + notes
                 + (_tbl(["#", "hint", "kWh/yr", f"{cur}/yr", "t CO2/yr", "confidence"], hrows, left=2) if hrows else "<p>No hints for this period.</p>")
                 + hint_svg + f'<p class="src">Annual figures assume the condition persists; cost from the tariff ({escape(cur)}), CO2 from {escape(grid.cite())}.</p></section>')
    # --- energy plots
    parts.append(_energy_section(data, settings, acc, twin, rep))
    # --- factors
    frows = [[escape(f["id"]), _f(f["value"], 4), escape(f["unit"]), escape(f["region"]), str(f["year"]), escape(f["publisher"]),
              escape(f["purpose"]), f"[{escape(f['source'])}]", escape(f["quality"]), escape(f["library"])] for f in rep["factors_used"]]
    parts.append('<section id="factors"><h2>Emission factors used</h2>'
                 + _tbl(["id", "value", "unit", "region", "year", "publisher", "purpose", "source", "quality", "library"], frows)
                 + '<p class="src">Source keys are listed below and in docs/sources.md. Factors of quality '
                 "secondary or unverified must be checked against the primary source before a verified declaration.</p></section>")
    # --- every source key the report cites, from the in-repository source list
    cited = sources.entries(sources.keys_in("".join(parts)))
    parts.append('<section id="sources"><h2>Sources cited</h2>'
                 + _tbl(["key", "source", "where"], [[escape(x["key"]), escape(x["title"]), escape(x["where"] or "—")] for x in cited])
                 + "</section>")
    title = f"Carbon and optimisation report — {escape(data.site)}"
    period = f"{iso(data.start)[:16].replace('T', ' ')} to {iso(data.end)[:16].replace('T', ' ')} UTC"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><style>{_CSS}</style></head><body><header><h1>{title}</h1>"
            f"<p>{escape(data.plant.plant)} plant · {period} · generated {escape(rep['generated'])} by carbonedge</p></header>"
            f"<main>{''.join(parts)}</main></body></html>")


def unusual_hours(twin: TwinResult) -> list[dict[str, Any]]:
    """Alert episodes per process: its metered energy per bin scored by the streaming detector
    (:func:`analytics.detect.alert_episodes`, the same detector as ``analyze detect``) with the
    calibrated process model's expected energy as production context, warmed up on the baseline period."""
    from carbonedge.analytics.detect import alert_episodes

    out = []
    for nm in twin.models:
        o, m = twin.observations[nm], twin.models[nm]
        pred = m.predict(o)
        for e in alert_episodes(o.edges[:-1], o.energy_kwh, pred.reshape(-1, 1), learn_until=m.baseline_end):
            out.append({"process": nm, "start": iso(e.start), "end": iso(e.end), "bins": e.rows, "excess_kwh": e.excess,
                        "peak_score": e.peak_score, "accepted_as_new_normal": e.accepted})
    return sorted(out, key=lambda r: -abs(r["excess_kwh"]))


def _unusual_hours(eps: list[dict[str, Any]]) -> str:
    head = "<h3>Unusual periods</h3>"
    src = ('<p class="src">Each process\'s metered energy per bin, scored in time order by the streaming detector of '
           "<code>carbonedge analyze detect</code> with the process model's expected energy as production context, warmed up on "
           "the baseline period; score 0.5 is the alert threshold. Excess = metered − expected over the episode.</p>")
    if not eps:
        return head + "<p>No process left its normal range after the baseline period.</p>" + src
    rows = [[escape(e["process"]), escape(e["start"]), escape(e["end"]), str(e["bins"]), _f(e["excess_kwh"]), _f(e["peak_score"], 2),
             "yes" if e["accepted_as_new_normal"] else ""] for e in eps[:15]]
    more = f"<p>… and {len(eps) - 15} more (report.json).</p>" if len(eps) > 15 else ""
    return head + _tbl(["process", "from", "to", "bins", "excess kWh", "peak score", "new normal"], rows) + more + src


#: Why the process models here and the EnPI baselines (``analyze enpi``, the demo's EnPI table) give different kW and kWh per unit.
MODELS_VS_ENPI = (
    "Model SEC is the model's energy per unit of output over its baseline period (Σ modelled energy / Σ output); it is the figure "
    "the EnPI baselines must match (within their NMBE, a few per cent, over the same period). Their kW and kWh-per-unit "
    "coefficients need not match, for stated reasons: (1) the periods differ (these models: the first third of the period, at "
    "least 24 h; the demo's EnPIs: its first half); (2) for a line that runs the whole baseline with output moving with running "
    "time, the split of its energy into a running load and a kWh per unit is not determined by the data, so any split that "
    "reproduces the energy is as good (the EnPI table flags such lines); (3) both set a batch's output against the hours whose "
    "energy made it (a heat is counted at tapping), and both keep every coefficient >= 0 (physical signs).")


def _energy_section(data: PlantData, settings: Settings, acc: Accounts, twin: TwinResult, rep: dict[str, Any]) -> str:
    span_d = (data.end - data.start) / 86400.0
    # Daily bars for long periods, hourly for short ones.
    step = 24 if span_d >= 3 else 1
    n = (len(acc.edges) - 1) // step * step
    starts = acc.edges[:-1][:n:step]
    energy = {name: p.energy_kwh[:n].reshape(-1, step).sum(axis=1) for name, p in acc.processes.items() if p.energy_kwh.sum() > 0}
    out_proc = data.plant.output_process
    output = acc.processes[out_proc].production[:n].reshape(-1, step).sum(axis=1) if out_proc in acc.processes else None
    label = "day" if step == 24 else "hour"
    svgs = [("Energy and SEC", plots.energy_sec(starts, energy, output, data.plant.sec_label, label,
                                                edges=acc.edges[:n + 1:step]))]
    local = acc.edges[:-1] + settings.tariff.utc_offset_h * 3600.0
    hours = ((local // 3600) % 24).astype(int)
    bin_h = np.diff(acc.edges) / 3600.0
    kw = {name: p.energy_kwh / bin_h for name, p in acc.processes.items() if p.energy_kwh.sum() > 0}
    svgs.append(("Load profile by hour of day", plots.load_profile(hours, kw)))
    top = sorted(twin.models, key=lambda nm: -float(twin.observations[nm].energy_kwh.sum()))[:5]
    if top:
        series = []
        cs = []
        cs_notes: list[str] = []
        for nm in top:
            o, m = twin.observations[nm], twin.models[nm]
            pred = m.predict(o)
            series.append((nm, o.edges, o.energy_kwh, pred, m.baseline_end))
            starts, c, notes = plots.cusum_points(o.edges, o.energy_kwh, pred, last_batch_count(data, nm) if o.has_production else None)
            cs.append((nm, starts, c))
            cs_notes += notes
        svgs.append(("Baseline vs actual (shaded: baseline period)", plots.baseline_vs_actual(series)))
        svgs.append(("CUSUM of savings, Σ(expected − actual) [M7]", plots.cusum(cs, cs_notes)))
    rows = [[escape(nm), escape(m.equation()), _f(m.modelled_sec, 2) if m.modelled_sec is not None else "—", _f(100 * m.fit["cv_rmse"], 1),
             _f(100 * m.fit["nmbe"], 2), _f(m.fit["r2"], 3)] for nm, m in twin.models.items()]
    body = "".join(f"<h3>{escape(t)}</h3>{s}" for t, s in svgs) + _unusual_hours(rep["unusual_periods"])
    return ('<section id="energy"><h2>Energy, SEC, baselines and CUSUM</h2>' + body + "<h3>Calibrated process models</h3>"
            + _tbl(["process", "model", "model SEC", "CV(RMSE) %", "NMBE %", "R²"], rows)
            + f'<p class="src">Per-bin models fitted by non-negative least squares on the baseline period; goodness of fit per ASHRAE '
            f"Guideline 14 (hourly limits CV(RMSE) ≤ 30 %, NMBE ≤ 10 % [M2]). Data: {escape(data.source)}.</p>"
            + f'<p class="src">{escape(MODELS_VS_ENPI)}</p></section>')
