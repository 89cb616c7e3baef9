"""Unseen real meter data through ``analyze detect``: flat columns, counters, integer values, missing cells,
very short and very long files. Each gives a correct score or a clear one-line refusal."""

from __future__ import annotations

import csv
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from carbonedge.analytics.detect import StreamingDetector
from carbonedge.analytics.offline import InputError, detect_csv
from carbonedge.app.cli import main

T0 = 1_772_409_600.0  # 2026-03-02 00:00 UTC


def _write(path: Path, header: list[str], cols: list[np.ndarray], step: float = 60.0, fmt: str = "{:.3f}") -> Path:
    n = len(cols[0])
    with path.open("w") as f:
        f.write(",".join(header) + "\n")
        for i in range(n):
            cells = ["" if not np.isfinite(c[i]) else fmt.format(c[i]) for c in cols]
            f.write(f"{T0 + step * i:.0f}," + ",".join(cells) + "\n")
    return path


def _scores(path: Path, cols: list[str], **kw: object) -> tuple[list[dict[str, str]], list[str]]:
    out = path.with_suffix(".scores.csv")
    summary = detect_csv(path, out, time_col="time", value_cols=cols, **kw)  # type: ignore[arg-type]
    with out.open() as f:
        return list(csv.DictReader(f)), summary.notes


def _alerts(rows: list[dict[str, str]], a: int = 0, b: int | None = None) -> int:
    return sum(r["alert"] == "1" for r in rows[a:b])


def test_a_flat_lined_column_scores_zero_and_does_not_blind_the_others(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 3000
    flat = np.full(n, 230.0)  # a stuck or constant reading, all the way through
    a = 50 + rng.normal(0, 1, n)
    b = 2 * a + rng.normal(0, 1, n)
    a[2500] += 15  # a spike in a live column
    rows, _ = _scores(_write(tmp_path / "f.csv", ["time", "flat", "a", "b"], [flat, a, b]), ["flat", "a", "b"])
    assert len(rows) == n
    assert rows[2500]["alert"] == "1" and rows[2500]["top_column"] == "a"
    assert _alerts(rows, 400) <= 0.01 * (n - 400) + 1  # the flat column neither alerts nor inflates the rest
    # A univariate flat line is scored, and nothing alerts.
    rows, _ = _scores(_write(tmp_path / "g.csv", ["time", "kw"], [flat]), ["kw"])
    assert len(rows) == n and _alerts(rows) == 0 and all(float(r["score"]) == 0.0 for r in rows)


def test_a_flat_column_that_starts_to_move_alerts_and_names_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    n = 2000
    flat = np.full(n, 0.0)
    flat[1500:] = 40.0  # a machine off during the warm-up and since, that starts
    a = 50 + rng.normal(0, 1, n)
    rows, _ = _scores(_write(tmp_path / "m.csv", ["time", "press", "a"], [flat, a]), ["press", "a"])
    assert rows[1500]["alert"] == "1" and rows[1500]["top_column"] == "press"
    assert _alerts(rows, 400, 1500) <= 12


def test_a_cumulative_counter_is_watched_as_a_rate_through_the_kernel_arithmetic(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 4000
    inc = np.maximum(0.0, rng.normal(100 / 60, 0.2, n))  # about 100 kWh/h in 1-min readings
    inc[3000:3100] *= 2.0  # the load doubles for 100 min
    total = 5000 + np.round(np.cumsum(inc), 1)  # a register read to 0.1 kWh: step-wise
    total[2000:] -= total[1999]  # the meter was swapped (reset to zero) at row 2000
    rows, notes = _scores(_write(tmp_path / "c.csv", ["time", "kwh"], [total], fmt="{:.1f}"), ["kwh"])
    assert any("cumulative counter" in s for s in notes)
    assert any("gave no rate" in s for s in notes)  # the reset is counted, not scored as a huge negative rate
    # Caught at once; after an hour of alert the doubled load is accepted as the new normal (by design).
    assert _alerts(rows, 3000, 3060) >= 55
    assert _alerts(rows, 400, 3000) <= 0.01 * 2600 + 2
    # --counters off watches the readings themselves: announced nowhere, the ramp followed by the level.
    _, notes = _scores(tmp_path / "c.csv", ["kwh"], counters="off")
    assert not any("cumulative counter" in s for s in notes)


def test_integer_valued_counts_keep_false_alarms_rare_and_catch_a_burst(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n = 5000
    x = rng.poisson(0.7, n).astype(float)  # pieces per minute, rejects per minute, pulses
    x[4000:4030] = rng.poisson(8.0, 30)
    rows, notes = _scores(_write(tmp_path / "i.csv", ["time", "pcs"], [x], fmt="{:.0f}"), ["pcs"])
    assert not any("counter" in s for s in notes)
    assert _alerts(rows, 400, 4000) <= 0.01 * 3600
    assert _alerts(rows, 4000, 4030) >= 20


def test_heavy_missingness_is_scored_and_counted(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 6000
    a = 20 + rng.normal(0, 1, n)
    b = 5 + rng.normal(0, 0.3, n)
    a[rng.random(n) < 0.7] = np.nan  # 70 % of the cells empty
    b[rng.random(n) < 0.7] = np.nan
    a[5000] = 40.0
    rows, notes = _scores(_write(tmp_path / "h.csv", ["time", "a", "b"], [a, b]), ["a", "b"])
    assert len(rows) == n
    assert any("'a'" in s and "missing" in s for s in notes)
    assert rows[5000]["alert"] == "1"
    assert _alerts(rows, 400) <= 0.01 * (n - 400) + 2
    # A column with no number at all is left out, the others are still watched.
    c = np.full(n, np.nan)
    rows, _ = _scores(_write(tmp_path / "e.csv", ["time", "a", "c"], [a, c]), ["a", "c"])
    assert rows[5000]["alert"] == "1"


def test_very_short_files_are_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _write(tmp_path / "s.csv", ["time", "kw"], [np.array([1.0, 2.0, 1.5, 1.2, 1.1])])
    with pytest.raises(InputError, match="only 5 rows, all used for learning"):
        detect_csv(p, tmp_path / "o.csv", time_col="time", value_cols=["kw"])
    (tmp_path / "h.csv").write_text("time,kw\n")
    assert main(["analyze", "detect", "--csv", str(tmp_path / "h.csv"), "--out", str(tmp_path / "o.csv")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0] and "rows" in err[0]
    # With a warm-up that fits, a short file is scored.
    x = np.r_[np.full(30, 10.0) + np.arange(30) % 3 * 0.1, 30.0]
    rows, _ = _scores(_write(tmp_path / "t.csv", ["time", "kw"], [x]), ["kw"], settings=_settings(learn_rows=20), counters="off")
    assert rows[-1]["alert"] == "1"


def _settings(**kw: object) -> object:
    from carbonedge.analytics.detect import DetectorSettings

    return DetectorSettings(**kw)  # type: ignore[arg-type]


def test_a_very_long_file_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    n = 120_000
    p = _write(tmp_path / "l.csv", ["time", "kw"], [100 + rng.normal(0, 2, n)])
    tracemalloc.start()
    try:
        rows = detect_csv(p, tmp_path / "o.csv", time_col="time", value_cols=["kw"]).rows
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == n
    assert peak < 8_000_000  # the rows are not held: ~60 bytes per row would already be 7 MB


def test_detector_state_stays_bounded_however_long_the_stream() -> None:
    det = StreamingDetector(3)
    rng = np.random.default_rng(7)
    for i in range(20_000):
        det.update(rng.normal(0, 1, 3), t=60.0 * i)
    assert not det._buf and all(len(th.hist) <= det.settings.history_rows
                                for th in (det._th_point, det._th_sust, det._th_t2, det._th_sub))
