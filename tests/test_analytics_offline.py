"""Offline analytics: causal CSV anomaly scores, regression baselines (ASHRAE 14), intervals, media."""

from __future__ import annotations

import csv
import io

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from carbonedge.analytics.baseline import BaselineError, Hinge, compare_periods, cusum, fit_baseline, goodness_of_fit
from carbonedge.analytics.detect import DetectorSettings, StreamingDetector
from carbonedge.analytics.interval import GAP, RESET, ROLLOVER, aggregate, intervals, parse_shifts, period_key, zone
from carbonedge.analytics.media import factors
from carbonedge.analytics.offline import InputError, baseline_csv, detect_csv
from carbonedge.app.cli import main
from carbonedge.errors import ConfigError

T0 = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp())


def _write(path: Path, header: list[str], rows: list[list[object]], sep: str = ",") -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f, delimiter=sep)
        w.writerow(header)
        w.writerows(rows)
    return path


def _plant_rows(n: int, seed: int, *, fault_from: int | None = None, idle_power_fault: bool = False) -> list[list[object]]:
    """A machine that draws ~400 kW while running and ~20 kW when stopped, with a compressor alongside."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        running = 1 if (i // 37) % 3 else 0  # runs two thirds of the time, in blocks
        power = 20 + 380 * running + rng.normal(0, 8)
        air = 150 + rng.normal(0, 3)
        if fault_from is not None and i >= fault_from:
            if idle_power_fault and not running:
                power += 300  # drawing running-level power while producing nothing
            elif not idle_power_fault:
                air += 25  # a leak: +17 % compressor power
        ts = datetime.fromtimestamp(T0 + 60 * i, UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.append([ts, f"{power:.3f}", f"{air:.3f}", running])
    return rows


def _scores(path: Path, out: Path, **kw) -> list[dict[str, str]]:
    detect_csv(path, out, time_col="ts", **kw)
    with out.open() as f:
        return list(csv.DictReader(f))


def test_detect_is_causal_future_rows_change_nothing(tmp_path: Path) -> None:
    rows = _plant_rows(900, seed=1)
    head = _write(tmp_path / "head.csv", ["ts", "press_kw", "air_kw", "running"], rows[:600])
    # The same first 600 rows, followed by 300 rows of a gross fault and then one absurd value.
    fut = [r[:] for r in rows[600:]]
    for r in fut:
        r[1] = "99999"
    full = _write(tmp_path / "full.csv", ["ts", "press_kw", "air_kw", "running"], rows[:600] + fut)
    kw = dict(value_cols=["press_kw", "air_kw"], context_cols=["running"], settings=DetectorSettings(learn_rows=200))
    a = _scores(head, tmp_path / "a.csv", **kw)
    b = _scores(full, tmp_path / "b.csv", **kw)
    assert len(a) == 600 and len(b) == 900
    assert a == b[:600]  # byte-identical results for every earlier row
    assert any(r["alert"] == "1" for r in b[600:])  # and the appended fault is seen


def test_detect_one_changed_row_affects_only_itself_and_later(tmp_path: Path) -> None:
    rows = _plant_rows(500, seed=2)
    base = _write(tmp_path / "base.csv", ["ts", "press_kw", "air_kw", "running"], rows)
    rows2 = [r[:] for r in rows]
    rows2[350][2] = "5000"
    changed = _write(tmp_path / "changed.csv", ["ts", "press_kw", "air_kw", "running"], rows2)
    kw = dict(value_cols=["press_kw", "air_kw"], settings=DetectorSettings(learn_rows=200))
    a = _scores(base, tmp_path / "a.csv", **kw)
    b = _scores(changed, tmp_path / "b.csv", **kw)
    assert a[:350] == b[:350]
    assert b[350]["alert"] == "1" and b[350]["top_column"] == "air_kw"


def test_detect_step_in_one_column_is_caught_and_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "leak.csv", ["ts", "press_kw", "air_kw", "running"], _plant_rows(1500, seed=3, fault_from=1000))
    out = _scores(path, tmp_path / "o.csv", value_cols=["press_kw", "air_kw"], context_cols=["running"], settings=DetectorSettings(learn_rows=400))
    before = [r for r in out[400:1000]]
    after = out[1000:]
    assert sum(r["alert"] == "1" for r in before) / len(before) < 0.01
    first = next(i for i, r in enumerate(after) if r["alert"] == "1")
    assert first <= 15  # rows (minutes) of delay with the default smoothing
    # The step alerts until it has lasted an hour (accept_after_h), then it is the new normal.
    accepted = next(i for i, r in enumerate(after) if r["state"] == "accepted")
    assert 55 <= accepted <= 75
    assert all(r["alert"] == "1" for r in after[first + 5:accepted])
    assert sum(r["alert"] == "1" for r in after[accepted + 1:]) / len(after[accepted + 1:]) < 0.01
    assert {r["top_column"] for r in after if r["alert"] == "1"} == {"air_kw"}


def test_detect_production_aware_power_while_idle(tmp_path: Path) -> None:
    """Running-level power while stopped is an anomaly; the same power while running is not."""
    path = _write(tmp_path / "idle.csv", ["ts", "press_kw", "air_kw", "running"], _plant_rows(1500, seed=4, fault_from=1000, idle_power_fault=True))
    out = _scores(path, tmp_path / "o.csv", value_cols=["press_kw"], context_cols=["running"], settings=DetectorSettings(learn_rows=400))
    running = [int(r[3]) for r in _plant_rows(1500, seed=4)]
    normal = out[400:1000]
    assert sum(r["alert"] == "1" for r in normal) == 0
    idle_after = [out[i]["alert"] == "1" for i in range(1010, 1500) if running[i] == 0 and running[i - 5] == 0]
    # Smoothing carries an alert ~10 rows past the end of an idle stretch; judge running rows after that.
    run_after = [out[i]["alert"] == "1" for i in range(1010, 1500) if all(running[i - k] == 1 for k in range(15))]
    assert np.mean(idle_after) > 0.9
    assert np.mean(run_after) < 0.05


def test_detect_csv_input_errors_are_clear(tmp_path: Path) -> None:
    p = _write(tmp_path / "x.csv", ["time", "kw"], [["2026-01-01T00:00:00Z", 1.0]] * 20, sep=";")
    with pytest.raises(InputError, match="no column 'power'.*the file has: time, kw"):
        detect_csv(p, tmp_path / "o.csv", time_col="time", value_cols=["power"])
    short = _write(tmp_path / "s.csv", ["time", "kw"], [[T0 + i, i] for i in range(30)])
    with pytest.raises(InputError, match="all used for learning"):
        detect_csv(short, tmp_path / "o.csv", time_col="time", value_cols=["kw"])


def test_detect_missing_values_are_counted_not_fatal(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rows = [[T0 + 60 * i, f"{100 + rng.normal():.3f}" if i % 50 else "n/a"] for i in range(600)]
    p = _write(tmp_path / "m.csv", ["time", "kw"], rows, sep="\t")
    summary = detect_csv(p, tmp_path / "o.csv", time_col="time", value_cols=["kw"], settings=DetectorSettings(learn_rows=100))
    assert summary.rows == 600
    assert summary.notes == ["12 row(s) with an empty or non-numeric 'kw', treated as missing"]
    assert summary.alert_rows == 0


def test_streaming_detector_learn_until_and_settings_checked() -> None:
    with pytest.raises(Exception, match="at least 10"):
        DetectorSettings(learn_rows=3)
    det = StreamingDetector(1, settings=DetectorSettings(learn_rows=10**9))
    for i in range(50):
        assert det.update(np.array([float(i % 5)])).learning
    det.finish_learning()
    s = det.update(np.array([2.0]))
    assert not s.learning and 0 <= s.score < 0.5


def test_cli_detect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "leak.csv", ["ts", "press_kw", "air_kw", "running"], _plant_rows(800, seed=6, fault_from=600))
    out = tmp_path / "scores.csv"
    rc = main(["analyze", "detect", "--csv", str(path), "--time-col", "ts", "--value-col", "press_kw", "--value-col", "air_kw",
               "--context-col", "running", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "800 rows; warm-up on the first 400" in text
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [k for k in rows[0]] == ["ts", "score", "alert", "state", "top_column"]
    assert all(0 <= float(r["score"]) < 1 for r in rows)
    rc = main(["analyze", "detect", "--csv", str(path), "--time-col", "nope", "--value-col", "air_kw", "--out", str(out)])
    assert rc == 2 and "no column 'nope'" in capsys.readouterr().err


# --------------------------------------------------------------------------- baselines


def test_goodness_of_fit_matches_ashrae14_formulas() -> None:
    y = np.array([100.0, 110.0, 95.0, 105.0, 120.0])
    yh = np.array([98.0, 112.0, 97.0, 103.0, 118.0])
    f = goodness_of_fit(y, yh, p=2)
    r = y - yh
    assert f.cv_rmse == pytest.approx(np.sqrt((r**2).sum() / 3) / y.mean())
    assert f.nmbe == pytest.approx(r.sum() / (3 * y.mean()))
    assert f.r2 == pytest.approx(1 - (r**2).sum() / ((y - y.mean()) ** 2).sum())
    assert f.meets("hourly") and f.meets("monthly")
    with pytest.raises(BaselineError, match="too few"):
        goodness_of_fit(y[:2], yh[:2], p=2)


def test_fit_baseline_recovers_model_and_cusum_shows_saving() -> None:
    rng = np.random.default_rng(7)
    prod = rng.uniform(50, 150, 400)
    energy = 500 + 3.2 * prod + rng.normal(0, 15, 400)
    b = fit_baseline(prod[:300, None], energy[:300], ["production_t"])
    assert b.coefficients[0] == pytest.approx(3.2, rel=0.03)
    assert b.intercept == pytest.approx(500, rel=0.05)
    assert b.fit.meets("hourly") and b.fit.r2 > 0.9
    saved = energy[300:] * 0.95  # a 5 % improvement in the reporting period
    cs = cusum(b.predict(prod[300:, None]), saved)
    assert cs[-1] > 0 and np.all(np.diff(cs[50:]).mean() > 0)
    cmp = compare_periods(b, prod[300:, None], saved)
    assert cmp.improvement_pct == pytest.approx(5.0, abs=1.0)
    with pytest.raises(BaselineError, match="constant"):
        fit_baseline(np.ones((20, 1)), energy[:20], ["shifts"])


def test_baseline_csv_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(8)
    rows = []
    for h in range(24 * 40):
        t = datetime.fromtimestamp(T0 + 3600 * h, UTC).isoformat()
        prod = max(0.0, rng.normal(40, 12))
        temp = 10 + 8 * np.sin(h / 24 * 2 * np.pi)
        kwh = 800 + 25 * prod + 6 * temp + rng.normal(0, 40)
        rows.append([t, f"{kwh:.2f}", f"{prod:.3f}", f"{temp:.2f}"])
    p = _write(tmp_path / "hourly.csv", ["time", "kwh", "t_out", "temp_c"], rows)
    rep = baseline_csv(p, time_col="time", target="kwh", features=["t_out"], mean_features=["temp_c"], train_until=T0 + 30 * 86400)
    assert rep.limits == "hourly" and rep.train.meets("hourly") and rep.test is not None and rep.test.meets("hourly")
    assert rep.baseline.coefficients[0] == pytest.approx(25, rel=0.05)
    daily = baseline_csv(p, time_col="time", target="kwh", features=["t_out"], train_until=T0 + 30 * 86400, aggregate="day", tz="Europe/Berlin")
    assert daily.train.n in (30, 31) and daily.test is not None
    out = tmp_path / "bl.csv"
    rc = main(["analyze", "baseline", "--csv", str(p), "--time-col", "time", "--target", "kwh", "--feature", "t_out",
               "--mean-feature", "temp_c", "--train-until", "2026-04-01T00:00:00Z", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "CV(RMSE)" in text and "training" in text and "reporting" in text and "meets" in text
    lines = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(lines) == 960 and lines[0]["period"] == "train" and lines[-1]["period"] == "report"


# --------------------------------------------------------------------------- intervals and periods


def test_intervals_reset_rollover_gap() -> None:
    t = np.array([0, 60, 120, 180, 240, 600, 660]) * 1000
    modulus = 4294967.296
    v = np.array([4294960.0, 4294965.0, 3.0, 8.0, 2.0, 12.0, 15.0])
    iv = intervals(t, v, modulus=modulus, max_gap_s=180)
    assert iv.delta.tolist() == pytest.approx([5.0, modulus - 4294965.0 + 3.0, 5.0, 2.0, 10.0, 3.0])
    assert iv.flags.tolist() == [0, ROLLOVER, 0, RESET, GAP, 0]
    assert (iv.resets, iv.rollovers, iv.gaps) == (1, 1, 1)
    # Without a modulus the same decrease can only be a reset: never negative.
    assert intervals(t, v).delta.min() >= 0


def test_aggregate_local_days_across_dst_and_shifts() -> None:
    berlin = zone("Europe/Berlin")
    # 2026-03-29 is the spring-forward day in Europe: 23 hours long.
    start = int(datetime(2026, 3, 28, 23, 0, tzinfo=UTC).timestamp() * 1000)  # local 00:00 on the 29th (CET)
    t = start + np.arange(0, 49) * 3600_000
    v = np.arange(0, 49) * 10.0  # 10 kWh per hour
    days = aggregate(intervals(t, v), "day", berlin)
    labels = {lab: tot for lab, tot, _ in days.values()}
    assert labels["2026-03-29"] == pytest.approx(230.0)  # 23 h
    assert sum(labels.values()) == pytest.approx(480.0)
    shifts = parse_shifts({"early": "06:00-14:00", "late": "14:00-22:00", "night": "22:00-06:00"})
    assert period_key(int(datetime(2026, 3, 3, 3, 0, tzinfo=UTC).timestamp() * 1000), "shift", zone("UTC"), shifts)[1] == "2026-03-02 night"
    by_shift = aggregate(intervals(t, v), "shift", berlin, shifts)
    assert sum(x[1] for x in by_shift.values()) == pytest.approx(480.0)
    # An interval straddling a boundary is split in proportion to time.
    half = aggregate(intervals(np.array([start + 1800_000 - 3600_000, start + 1800_000]), np.array([0.0, 10.0])), "day", berlin)
    assert sorted(x[1] for x in half.values()) == pytest.approx([5.0, 5.0])
    with pytest.raises(ConfigError, match="unknown time zone"):
        zone("Mars/Olympus")


def test_media_factors_and_overrides() -> None:
    f = factors()
    assert f["active_energy_import"].to_gj(1000) == pytest.approx(3.6)
    assert f["active_energy_import"].to_tce(1000) == pytest.approx(0.1229)
    assert f["gas_volume"].to_kwh(100) == pytest.approx(1000)
    with pytest.raises(ConfigError, match="no energy factor"):
        f["water_volume"].to_kwh(1)
    g = factors({"gas_volume": {"kwh_per_unit": 9.77, "source": "supplier certificate 2026-02"}})
    assert g["gas_volume"].to_kwh(100) == pytest.approx(977) and g["gas_volume"].source == "supplier certificate 2026-02"
    with pytest.raises(ConfigError, match="'source' is required"):
        factors({"gas_volume": {"kwh_per_unit": 9.77}})


def test_change_point_baseline_finds_the_balance_point_and_keeps_lines_straight() -> None:
    """Heating below a balance point (ASHRAE 14 inverse models): the fit finds the kink; a linear load stays linear."""
    rng = np.random.default_rng(11)
    n = 365
    temp = 10 + 12 * np.sin(np.arange(n) / 365 * 2 * np.pi) + rng.normal(0, 3, n)  # daily mean outdoor temperature
    prod = rng.uniform(80, 120, n)
    heat = 400 + 9.0 * prod + 55.0 * np.maximum(0.0, 15.0 - temp) + 30.0 * np.maximum(0.0, temp - 21.0) + rng.normal(0, 25, n)
    X = np.column_stack([prod, temp])
    b = fit_baseline(X[:270], heat[:270], ["production_t", "temp_c"], change_point=["temp_c"])
    hinges = {t.kind: t for t in b.terms if isinstance(t, Hinge)}
    assert set(hinges) == {"heating", "cooling"}, b.equation()
    assert abs(hinges["heating"].balance - 15.0) < 1.5 and abs(hinges["cooling"].balance - 21.0) < 2.5, b.equation()
    assert b.fit.p == 1 + 1 + 2 + 2  # intercept, production, two hinge slopes, two balance points
    line = fit_baseline(X[:270], heat[:270], ["production_t", "temp_c"])
    assert b.fit.cv_rmse < 0.6 * line.fit.cv_rmse
    # Out of sample, on the reporting rows, the change-point model predicts as well as it fits.
    resid = heat[270:] - b.predict(X[270:])
    assert np.sqrt((resid**2).mean()) < 35
    # A load that is linear in temperature keeps its straight line.
    lin = 300 + 8.0 * prod - 12.0 * temp + rng.normal(0, 20, n)
    b2 = fit_baseline(X, lin, ["production_t", "temp_c"], change_point=["temp_c"])
    assert b2.terms == ["production_t", "temp_c"], b2.equation()
    with pytest.raises(BaselineError, match="not among"):
        fit_baseline(X, lin, ["production_t", "temp_c"], change_point=["humidity"])
