"""Energy-baseline quality on real metered buildings: the nmecr example data (kW Engineering).

Two buildings, each run through :func:`analytics.offline.baseline_csv` — the code behind
``carbonedge analyze baseline`` — with its defaults (time-of-week model, penalty and temperature form
chosen by blocked cross-validation inside the training period):

* **Commercial building**, daily kWh and outdoor temperature, 2012-03-01 … 2015-02-28. Baseline year
  2012-03-01 … 2013-02-28 (nmecr's end-of-interval labels leave n = 364 days: the first day's
  value is labelled 03/02, so the baseline rows are the days 03/01 … 02/27), reporting year
  2014-03-01 … 2015-02-28 by nmecr's labels (the days 2014-02-28 … 2015-02-27), installation year left out. Published (nmecr vignettes, in sample): TOWT
  CV(RMSE) 6.79 %, R² 0.896, p = 19; savings 408,142 kWh ≈ 7 %, uncertainty 26.6 % at 90 %.
* **School**, hourly kWh, temperature and four daily operating-mode flags, 2018. Published (daily,
  in sample): TOWT 30.38 %, TOWT + operating modes 17.84 %.

Figures reported:

* in sample, daily, comparable with the published fits (p = effective parameters of the penalised fit);
* out of sample by **nested** blocked cross-validation: each calendar month of the training period is
  predicted by a model whose penalty and temperature form were chosen (by the inner blocked CV) and
  fitted on the other months only — no figure is scored on data used to choose or fit it;
* beside every out-of-sample figure the naive reference: the training mean by (operating day,
  weekday, time-of-day slot), cross-validated on the same folds.

Targets (exit 1 when missed): out of sample, the model beats the naive reference at hourly and daily
resolution (school hourly; both buildings daily) and meets ASHRAE 14 monthly (CV(RMSE) ≤ 15 %,
|NMBE| ≤ 5 %) on both; in sample, CV(RMSE) within 1 point of the published TOWT fits (6.79 %,
17.84 %) or better; on both buildings, the daily fit beats nmecr's own TOWT form rebuilt here (separate
occupied and unoccupied least-squares fits, :func:`published_towt`; it reproduces the published
6.79 %, 30.38 % and 17.8 % in sample) out of sample on the same folds; savings within their own stated
uncertainty of 408 MWh.

Usage::

    .venv/bin/python bench/baseline_eval.py [--data /work/shared/datasets/nmecr/data/csv]

The last line is ``commercial_cv_in=… commercial_cv_oos_daily=… … ok=1``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from carbonedge.analytics.baseline import (  # noqa: E402
    Calendar,
    NaiveTimeOfWeek,
    blocked_folds,
    out_of_sample_fit,
    select_time_of_week,
)
from carbonedge.analytics.offline import _rollup, baseline_csv  # noqa: E402

DATA = Path("/work/shared/datasets/nmecr/data/csv")
PUBLISHED = {"commercial_towt_cv": 0.0679, "school_towt_cv": 0.3038, "school_towt_modes_cv": 0.1784,
             "savings_kwh": 408_142.0, "savings_unc": 0.266}


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _utc(s: str) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp()


def _day(s: str) -> str:
    return s[:10]  # daily stamps are local midnights stored as UTC (00:00 or 01:00): the date is the day


def commercial_csv(data: Path, out: Path) -> Path:
    e = {_day(r["time"]): r["eload"] for r in _read(data / "eload.csv")}
    t = {_day(r["time"]): r["temp"] for r in _read(data / "temp.csv")}
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["date", "kwh", "temp_f"])
        for d in sorted(e):
            # nmecr labels each day with its end: its baseline year 03/01 … 02/28 holds the days
            # 2012-03-01 … 2013-02-27 (n = 364) and its reporting year the days 2014-02-28 … 2015-02-27.
            # The installation year between them is in neither fit nor savings.
            if "2013-02-28" <= d < "2014-02-28" or d > "2015-02-27":
                continue
            w.writerow([d, e[d], t.get(d, "")])
    return out


def school_csv(data: Path, out: Path) -> tuple[Path, list[str]]:
    temp: dict[str, str] = {}
    for r in _read(data / "school_temp.csv"):
        temp.setdefault(r["time"], r["temp"])  # the DST repeat of 2018-11-04 02:00: first of the two
    modes = _read(data / "school_op_mode.csv")
    names = [c for c in modes[0] if c != "time"]
    by_day = {_day(r["time"]): r for r in modes}
    cols = [n.replace(" ", "_") for n in names]
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "kwh", "temp_f", *cols])
        for r in _read(data / "school_eload.csv"):
            m = by_day.get(_day(r["time"]), {})
            w.writerow([r["time"], r["eload"], temp.get(r["time"], ""), *(m.get(n, "") for n in names)])
    return out, cols


def _rows(path: Path, time_col: str, features: list[str], aggregate: str | None, train_from: float, train_until: float):
    """The training rows as the baseline sees them (interval starts, target, variables)."""
    from carbonedge.analytics.offline import _aggregate, _read_table, _num

    tab = _read_table(path, time_col, ["kwh", "temp_f", *features], tz="UTC", date_format=None, delimiter=None)
    t = tab.t
    y = np.array([_num(v) for v in tab.cols["kwh"]])
    X = np.column_stack([np.array([_num(v) for v in tab.cols[c]]) for c in [*features, "temp_f"]])
    step = float(np.median(np.diff(np.unique(t))))
    if aggregate:
        t, Y, _ = _aggregate(t, np.column_stack([y, X]), ["sum"] * (1 + len(features)) + ["mean"], aggregate, "UTC")
        y, X = Y[:, 0], Y[:, 1:]
        step = 86400.0
    keep = (t >= train_from) & (t < train_until)
    return t[keep], X[keep], y[keep], step


def nested(t: np.ndarray, X: np.ndarray, y: np.ndarray, names: list[str], step: float) -> tuple[np.ndarray, np.ndarray]:
    cal = Calendar("UTC")
    folds, _ = blocked_folds(t, "UTC", step)
    pred = np.full(t.size, np.nan)
    naive = np.full(t.size, np.nan)
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        sel = select_time_of_week(t[tr], X[tr], y[tr], names, calendar=cal, step=step, temperature=["temp_f"])
        pred[te] = sel.model.predict(t[te], X[te])
        naive[te] = NaiveTimeOfWeek(sel.model, t[tr], y[tr]).predict(t[te])
    return pred, naive


def classic(t: np.ndarray, X: np.ndarray, y: np.ndarray, names: list[str], step: float) -> tuple[float, float, np.ndarray]:
    """The published model's structure refitted here: day-of-week indicators, 6 temperature segments,
    the other variables as lines, ordinary least squares (no penalty). Returns the in-sample CV(RMSE)
    with p = its parameters, p, and nested out-of-fold predictions (each month from the other months)."""
    from carbonedge.analytics.baseline import fit_time_of_week

    cal = Calendar("UTC")
    kw = dict(calendar=cal, step=step, alpha=1e-6, temperature=["temp_f"], temp_form="segments", operating="off", blocks=("day",))
    m = fit_time_of_week(t, X, y, names, **kw)
    folds, _ = blocked_folds(t, "UTC", step)
    pred = np.full(t.size, np.nan)
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        pred[te] = fit_time_of_week(t[tr], X[tr], y[tr], names, **kw).predict(t[te], X[te])
    return m.fit.cv_rmse, m.fit.p, pred


def published_towt(t: np.ndarray, X: np.ndarray, y: np.ndarray, names: list[str]) -> tuple[float, int, np.ndarray]:
    """nmecr's daily TOWT form with its extra variables, rebuilt here: each weekday is *occupied* when a
    regression of load on temperature (hinges at 50 and 65 °F) under-predicts it on more than 65 % of
    its days; occupied and unoccupied days get separate least-squares fits, each with weekday levels,
    6 temperature segments and every other variable (so p = 27 for the school with its four mode
    flags, as published). Returns the in-sample CV(RMSE), p, and nested out-of-fold predictions
    (each calendar month from the other months, occupancy and knots re-derived on them)."""
    from carbonedge.analytics.baseline import segment_knots

    wk = ((np.asarray(t) // 86400).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    temp = X[:, names.index("temp_f")]
    other = [X[:, i] for i, c in enumerate(names) if c != "temp_f"]

    def fit(tr: np.ndarray) -> tuple[Any, int]:
        A = np.column_stack([np.ones(tr.sum()), np.minimum(temp[tr] - 50, 0), np.maximum(temp[tr] - 65, 0)])
        res = y[tr] - A @ np.linalg.lstsq(A, y[tr], rcond=None)[0]
        occ_days = [d for d in range(7) if (res[wk[tr] == d] > 0).mean() > 0.65]
        knots = segment_knots(temp[tr])

        def design(rows: np.ndarray) -> np.ndarray:
            cols = [(wk[rows] == d).astype(float) for d in range(7)]
            cols += [temp[rows]] + [np.maximum(0.0, temp[rows] - k) for k in knots] + [o[rows] for o in other]
            return np.column_stack(cols)

        models = []
        p = 0
        for occ in (True, False):
            sub = tr & (np.isin(wk, occ_days) == occ)
            if not sub.any():
                continue
            D = design(sub)
            keep = np.linalg.matrix_rank(D) if D.size else 0
            beta = np.linalg.lstsq(D, y[sub], rcond=None)[0]
            models.append((occ, beta))
            p += keep

        def predict(rows: np.ndarray) -> np.ndarray:
            out = np.full(rows.sum(), np.nan)
            o = np.isin(wk[rows], occ_days)
            D = design(rows)
            for occ, beta in models:
                out[o == occ] = np.maximum(0.0, D[o == occ] @ beta)
            return out

        return predict, p

    ok = np.isfinite(y) & np.all(np.isfinite(X), axis=1)
    predict, p = fit(ok)
    resid = y[ok] - predict(ok)
    cv_in = float(np.sqrt((resid ** 2).sum() / (ok.sum() - p)) / y[ok].mean())
    folds, _ = blocked_folds(t, "UTC", 86400.0)
    pred = np.full(t.size, np.nan)
    for f in np.unique(folds):
        pr, _ = fit(ok & (folds != f))
        te = ok & (folds == f)
        pred[te] = pr(te)
    return cv_in, p, pred


def figures(t: np.ndarray, y: np.ndarray, pred: np.ndarray, naive: np.ndarray, levels: list[tuple[str, str | None]]) -> dict[str, tuple]:
    out = {}
    for name, period in levels:
        if period is None:
            ok = np.isfinite(y) & np.isfinite(pred) & np.isfinite(naive)
            yy, pp, nn = y[ok], pred[ok], naive[ok]
        else:
            yy, pp, nn = _rollup(t, [y, pred, naive], period, "UTC")
        out[name] = (out_of_sample_fit(yy, pp), out_of_sample_fit(yy, nn))
    return out


def line(label: str, f: tuple) -> str:
    m, n = f
    return (f"  {label:<28} n={m.n:>5}  model CV(RMSE) {m.cv_rmse:6.1%} NMBE {m.nmbe:+6.2%} R² {m.r2:6.3f}   "
            f"naive CV(RMSE) {n.cv_rmse:6.1%} NMBE {n.nmbe:+6.2%} R² {n.r2:6.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    a = ap.parse_args()
    if not (a.data / "eload.csv").exists():
        print(f"no nmecr data at {a.data}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="baseline_eval_"))
    ok = True
    res: dict[str, float] = {}

    # ---- commercial building, daily
    com = commercial_csv(a.data, tmp / "commercial.csv")
    b_from, b_until = _utc("2012-03-01 00:00:00"), _utc("2013-02-28 00:00:00")  # 364 days: 03/01 … 02/27
    rep = baseline_csv(com, time_col="date", target="kwh", features=[], mean_features=["temp_f"], train_from=b_from, train_until=b_until)
    print("Commercial building (daily; baseline days 2012-03-01 … 2013-02-27, n = 364, and reporting days 2014-02-28 … 2015-02-27, as nmecr)")
    print(f"  model: {rep.baseline.describe()}")
    print(f"  in sample: CV(RMSE) {rep.train.cv_rmse:.2%}  NMBE {rep.train.nmbe:+.3%}  R² {rep.train.r2:.3f}  p = {rep.train.p:.1f}  "
          f"(published TOWT: 6.79 %, R² 0.896, p = 19)")
    res["commercial_cv_in"] = rep.train.cv_rmse
    ok &= rep.train.cv_rmse <= PUBLISHED["commercial_towt_cv"] + 0.01
    t, X, y, step = _rows(com, "date", [], None, b_from, b_until)
    pred, naive = nested(t, X, y, ["temp_f"], step)
    f = figures(t, y, pred, naive, [("daily", None), ("monthly", "month")])
    print(line("nested blocked CV, daily", f["daily"]))
    print(line("nested blocked CV, monthly", f["monthly"]))
    cv_c, p_c, pred_c = classic(t, X, y, ["temp_f"], step)
    oos_c = out_of_sample_fit(y, pred_c)
    print(f"  published structure (weekday + 6 temperature segments, least squares) refitted: in sample {cv_c:.2%} (p = {p_c:.0f}); "
          f"blocked CV daily {oos_c.cv_rmse:.2%}")
    cv_n, p_n, pred_n = published_towt(t, X, y, ["temp_f"])
    oos_n = out_of_sample_fit(y, pred_n)
    print(f"  nmecr's form rebuilt (occupied/unoccupied fits): in sample {cv_n:.2%} (p = {p_n}); blocked CV daily {oos_n.cv_rmse:.2%}")
    res["commercial_nmecr_form_cv_in"] = cv_n
    res["commercial_nmecr_form_oos_daily"] = oos_n.cv_rmse
    res["commercial_published_structure_oos_daily"] = oos_c.cv_rmse
    res["commercial_cv_oos_daily"] = f["daily"][0].cv_rmse
    res["commercial_naive_oos_daily"] = f["daily"][1].cv_rmse
    res["commercial_cv_oos_monthly"] = f["monthly"][0].cv_rmse
    res["commercial_nmbe_oos_monthly"] = f["monthly"][0].nmbe
    ok &= f["daily"][0].cv_rmse < f["daily"][1].cv_rmse
    ok &= f["monthly"][0].meets("monthly")
    ok &= f["daily"][0].cv_rmse < oos_n.cv_rmse  # beats nmecr's own form out of sample
    unc = rep.uncertainty or float("nan")
    print(f"  savings: metered {rep.actual_total:,.0f} kWh, adjusted baseline {rep.expected_total:,.0f} kWh, "
          f"savings {rep.savings:,.0f} kWh = {rep.savings / rep.expected_total:.1%} ± {unc:.1%} of the savings at 90 % "
          f"(published: 5,101,762 / 5,509,903 / 408,142 kWh ≈ 7 % ± 26.6 %)")
    res["commercial_savings_kwh"] = rep.savings or float("nan")
    res["commercial_savings_unc"] = unc
    ok &= abs((rep.savings or 0) - PUBLISHED["savings_kwh"]) <= unc * (rep.savings or 0)

    # ---- school, hourly data
    sch, modes = school_csv(a.data, tmp / "school.csv")
    s_from, s_until = _utc("2018-01-01 00:00:00"), _utc("2019-01-01 00:00:00")
    print("School (hourly kWh, 2018; in sample at daily resolution as published)")
    for label, feats, pub in (("TOWT", [], PUBLISHED["school_towt_cv"]), ("TOWT + operating modes", modes, PUBLISHED["school_towt_modes_cv"])):
        r = baseline_csv(sch, time_col="time", target="kwh", features=feats, mean_features=["temp_f"], train_from=s_from,
                         train_until=s_until, aggregate="day")
        print(f"  {label:<24} in sample, daily: CV(RMSE) {r.train.cv_rmse:.2%}  R² {r.train.r2:.3f}  p = {r.train.p:.1f}  (published {pub:.2%})")
        key = "school_cv_in" if not feats else "school_modes_cv_in"
        res[key] = r.train.cv_rmse
        t, X, y, step = _rows(sch, "time", feats, "day", s_from, s_until)
        cv_c, p_c, pred_c = classic(t, X, y, [*feats, "temp_f"], step)
        oos_c = out_of_sample_fit(y, pred_c)
        pred, _ = nested(t, X, y, [*feats, "temp_f"], step)
        oos = out_of_sample_fit(y, pred)
        cv_n, p_n, pred_n = published_towt(t, X, y, [*feats, "temp_f"])
        oos_n = out_of_sample_fit(y, pred_n)
        print(f"  {'':<24} nmecr's form rebuilt (occupied/unoccupied fits): in sample {cv_n:.2%} (p = {p_n}); nested blocked CV daily {oos_n.cv_rmse:.2%}")
        print(f"  {'':<24} weekday + segments + variables, one least-squares fit: in sample {cv_c:.2%} (p = {p_c:.0f}); nested blocked CV daily: "
              f"that structure {oos_c.cv_rmse:.2%}, this model {oos.cv_rmse:.2%}")
        res[key.replace("_cv_in", "_nmecr_form_cv_in")] = cv_n
        res[key.replace("_cv_in", "_nmecr_form_oos")] = oos_n.cv_rmse
        res[key.replace("_in", "_oos")] = oos.cv_rmse
        res[key.replace("_cv_in", "_published_structure_oos")] = oos_c.cv_rmse
        # Matched or beaten: in sample within a point of the published fit, or out of sample better
        # than the published structure refitted on the same folds.
        # (checked below, once the hourly fit's daily figure is known: the data are hourly)
        matched = r.train.cv_rmse <= pub + 0.01
        res[key.replace("_cv_in", "_matched_in_sample")] = float(matched)
    for res_name, agg in (("hourly", None), ("daily", "day")):
        t, X, y, step = _rows(sch, "time", modes, agg, s_from, s_until)
        pred, naive = nested(t, X, y, [*modes, "temp_f"], step)
        levels = [(res_name, None)] + ([("daily", "day")] if agg is None else []) + [("monthly", "month")]
        f = figures(t, y, pred, naive, levels)
        for name, _ in levels:
            print(line(f"fit {res_name}: nested CV, {name}", f[name]))
        res[f"school_{res_name}_cv_oos"] = f[res_name][0].cv_rmse
        res[f"school_{res_name}_naive_oos"] = f[res_name][1].cv_rmse
        res[f"school_{res_name}_cv_oos_monthly"] = f["monthly"][0].cv_rmse
        res[f"school_{res_name}_nmbe_oos_monthly"] = f["monthly"][0].nmbe
        ok &= f[res_name][0].cv_rmse < f[res_name][1].cv_rmse
        ok &= f["monthly"][0].meets("monthly")
        if agg is None:
            ok &= f["daily"][0].cv_rmse < f["daily"][1].cv_rmse
            res["school_hourly_daily_cv_oos"] = f["daily"][0].cv_rmse
            res["school_hourly_daily_naive_oos"] = f["daily"][1].cv_rmse
    # Published school fits matched in sample, or beaten out of sample by this model's best daily
    # figure (from the hourly or the daily fit) against the published structure on the same folds.
    best_daily = min(res["school_hourly_daily_cv_oos"], res["school_daily_cv_oos"])
    ok &= bool(res["school_matched_in_sample"]) or best_daily < res["school_published_structure_oos"]
    ok &= bool(res["school_modes_matched_in_sample"]) or best_daily < res["school_modes_published_structure_oos"]
    # And out of sample better than nmecr's own form (occupied/unoccupied fits) rebuilt on the same folds.
    ok &= res["school_daily_cv_oos"] < res["school_modes_nmecr_form_oos"]
    ok &= res["school_cv_oos"] < res["school_nmecr_form_oos"]
    res["ok"] = float(ok)
    print(" ".join(f"{k}={v:.4f}" if k != "ok" else f"ok={int(v)}" for k, v in res.items()))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
