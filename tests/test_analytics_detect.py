"""The adaptive streaming detector: arrival order, adaptation with a bound, seasonality, calibration, API."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from carbonedge.analytics.detect import DetectorSettings, StreamingDetector
from carbonedge.analytics.offline import InputError, detect_csv
from carbonedge.app.cli import main

T0 = datetime(2026, 3, 2, tzinfo=UTC).timestamp()


def _run(x: np.ndarray, t: np.ndarray, **kw: object) -> tuple[np.ndarray, StreamingDetector]:
    det = StreamingDetector(1, settings=DetectorSettings(**kw))  # type: ignore[arg-type]
    alerts = np.array([det.update(float(v), t=float(tt)).alert for v, tt in zip(x, t, strict=True)])
    return alerts, det


def _daily(n_days: int, step_s: float = 300.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = T0 + step_s * np.arange(int(n_days * 86400 / step_s))
    day = np.sin(2 * np.pi * (t % 86400) / 86400)
    return t, 100 + 30 * day + rng.normal(0, 3, t.size), day


def test_a_lasting_step_is_caught_then_becomes_the_new_normal_within_the_bound() -> None:
    t, x, _ = _daily(10)
    step = 6 * 288
    x[step:] += 25  # a new operating point (8 standard deviations)
    alerts, det = _run(x, t)
    assert alerts[step : step + 3].any()
    # accept_after_h = 1: at 5-min sampling the alert lasts about 12 rows, then stops for good.
    assert not alerts[step + 24 :].any()
    assert det.accepted_changes >= 1
    assert any("accepted as the new normal" in n for n in det.notes())


def test_a_spike_and_a_missing_daily_peak_are_caught_a_slow_drift_is_not_an_alarm() -> None:
    t, x, day = _daily(21, seed=1)
    x += np.linspace(0, 30, x.size)  # slow drift: +30 % over three weeks
    spike = 15 * 288 + 100
    x[spike] += 40
    peak = 10 * 288
    flat = slice(peak + 60, peak + 200)
    x[flat] -= 30 * day[flat]  # half a day without the usual daily swing
    alerts, det = _run(x, t)
    assert alerts[spike]
    assert alerts[flat].mean() > 0.3
    # Everything else: the drift and ordinary noise raise almost nothing.
    other = np.ones(x.size, bool)
    other[:400] = other[spike] = other[flat] = False
    other[peak + 200 : peak + 300] = False
    assert alerts[other].mean() < 0.01
    # The daily profile was found on its own (predictor 1 = time of day).
    assert det._cols[0].active == 1


@pytest.mark.parametrize("noise", ["gauss", "student3", "uniform", "lognormal"])
def test_one_set_of_defaults_keeps_false_alarms_rare_on_any_noise(noise: str) -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    e = {"gauss": rng.normal(size=n), "student3": rng.standard_t(3, size=n), "uniform": rng.uniform(-1, 1, n),
         "lognormal": rng.lognormal(0, 1, n)}[noise]
    alerts, _ = _run(50 + 5 * e, T0 + 60 * np.arange(n))
    assert alerts[400:].mean() < 0.005


def test_score_is_calibrated_half_at_the_threshold_and_score_one_does_not_learn() -> None:
    rng = np.random.default_rng(3)
    det = StreamingDetector(2, settings=DetectorSettings(learn_rows=200))
    for i in range(500):
        det.update(rng.normal(size=2), t=T0 + i)
    before = det.score_one([0.1, -0.2], t=T0 + 500)
    again = det.score_one([0.1, -0.2], t=T0 + 500)
    assert before == again  # scoring alone changes nothing
    s = det.update([50.0, 50.0], t=T0 + 501)
    assert s.alert and 0.5 < s.score < 1.0
    # One spike is not a lasting shift: its smoothed trace fades and the alert ends within rows.
    after = [det.update([0.0, 0.0], t=T0 + 502 + i) for i in range(20)]
    assert not after[-1].alert and after[-1].score < 0.5


def test_backward_and_repeated_times_are_scored_in_arrival_order_and_counted(tmp_path: Path) -> None:
    """A DST fall-back repeats an hour of local stamps; an NTP step goes back 40 s: nothing is refused or reordered."""
    rng = np.random.default_rng(4)
    start = datetime(2026, 10, 24, 12, 0)
    rows = []
    for i in range(2000):
        local = start + timedelta(minutes=i)
        if local >= datetime(2026, 10, 25, 3, 0):  # clocks go back one hour at 03:00 local time
            local -= timedelta(hours=1)
        rows.append([local.strftime("%Y-%m-%d %H:%M:%S"), f"{20 + rng.normal():.3f}"])
    rows.insert(1500, [rows[1499][0], "20.1"])  # a re-sent row with the same stamp
    rows[1700][0] = (datetime.fromisoformat(rows[1699][0]) - timedelta(seconds=40)).strftime("%Y-%m-%d %H:%M:%S")
    p = tmp_path / "dst.csv"
    with p.open("w", newline="") as f:
        csv.writer(f).writerows([["time", "kw"], *rows])
    out = tmp_path / "o.csv"
    summary = detect_csv(p, out, time_col="time", value_cols=["kw"])
    assert summary.rows == len(rows)
    with out.open() as f:
        res = list(csv.DictReader(f))
    assert [r["time"] for r in res] == [r[0] for r in rows]  # file order kept
    assert any("earlier than the row before" in n for n in summary.notes)
    assert any("same time as the row before" in n for n in summary.notes)
    assert summary.alert_rows == 0


def test_a_failed_run_leaves_no_truncated_output(tmp_path: Path) -> None:
    p = tmp_path / "short.csv"
    p.write_text("time,kw\n" + "".join(f"{T0 + 60 * i},{i}\n" for i in range(30)))
    out = tmp_path / "o.csv"
    with pytest.raises(InputError, match="all used for learning"):
        detect_csv(p, out, time_col="time", value_cols=["kw"])
    assert not out.exists() and not (tmp_path / "o.csv.part").exists()


def test_cli_scores_a_plain_time_value_csv_without_naming_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(9)
    p = tmp_path / "meter.csv"
    rows = [f"{datetime.fromtimestamp(T0 + 900 * i, UTC):%Y-%m-%d %H:%M},{40 + rng.normal():.2f}\n" for i in range(1500)]
    rows[1200] = rows[1200].split(",")[0] + ",95\n"
    p.write_text("timestamp,kWh\n" + "".join(rows))
    out = tmp_path / "scores.csv"
    assert main(["analyze", "detect", "--csv", str(p), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "time column 'timestamp'" in text and "'kWh'" in text
    with out.open() as f:
        res = list(csv.DictReader(f))
    assert res[1200]["alert"] == "1"


def test_cli_reads_a_european_export_semicolons_decimal_commas_day_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(11)
    lines = []
    for i in range(1200):
        ts = datetime.fromtimestamp(T0 + 900 * i, UTC)
        v = 1234.5 + 20 * rng.normal() + (900 if i == 1000 else 0)
        lines.append(f"{ts:%d.%m.%Y %H:%M};{v:.1f}".replace(".", ",", 3).replace(",", ".", 2) + "\n")
    p = tmp_path / "export.csv"
    p.write_text("Zeit;Wirkarbeit kWh\n" + "".join(lines))
    assert "," in lines[0].split(";")[1] and lines[0].count(".") == 2
    out = tmp_path / "s.csv"
    assert main(["analyze", "detect", "--csv", str(p), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "decimal comma" in text
    with out.open() as f:
        res = list(csv.DictReader(f))
    assert len(res) == 1200 and res[1000]["alert"] == "1"
    assert sum(r["alert"] == "1" for r in res) < 12


def test_a_stream_that_was_flat_while_learning_settles_once_it_runs() -> None:
    """A machine off (a constant reading) during the warm-up, then running with ordinary noise for days."""
    rng = np.random.default_rng(12)
    n_off, n_on = 600, 3000
    x = np.concatenate([np.zeros(n_off), 50 + rng.normal(0, 2, n_on)])
    alerts, det = _run(x, T0 + 300 * np.arange(x.size))
    assert alerts[n_off : n_off + 3].any()  # it started: news
    assert alerts[n_off + 100 :].mean() < 0.01  # then it is the new normal, noise and all
