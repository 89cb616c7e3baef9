"""Carbon from CSV files a plant engineer has: interval or cumulative energy, one meter without a plant model."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from carbon_synth import make_plant

from carbonedge.analytics.carbon import FactorLibrary, compute_accounts, default_settings, from_csv_dir, from_meter_csv
from carbonedge.analytics.carbon.data import COUNTERS
from carbonedge.analytics.carbon.settings import with_grid_factor
from carbonedge.app import cli
from carbonedge.errors import ConfigError

EU = "eu27.grid.eea.2023"


@pytest.fixture(scope="module")
def plant_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("synth")
    make_plant(d, days=1)
    return d


def _as_interval(src: Path, dst: Path) -> Path:
    """The same export with every counter column as each row's consumption (the first row's is 0)."""
    shutil.copytree(src, dst)
    for f in dst.glob("*.csv"):
        with f.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            continue
        cols = list(rows[0])
        for q in [c for c in cols if c in COUNTERS]:
            v = np.array([float(r[q]) if r[q] else np.nan for r in rows])
            inc = np.concatenate([[0.0], np.diff(v)])
            for r, x in zip(rows, inc, strict=True):
                r[q] = repr(float(x))
        with f.open("w", newline="") as fh:
            w = csv.DictWriter(fh, cols)
            w.writeheader()
            w.writerows(rows)
    return dst


def test_interval_energy_read_as_a_counter_is_refused_and_read_as_interval_gives_the_same_carbon(plant_dir: Path, tmp_path: Path) -> None:
    d = _as_interval(plant_dir, tmp_path / "interval")
    # Read as cumulative counters, interval kWh would count only the rises between rows: a figure far
    # too low, silently. Refused, with the reason and the way out.
    with pytest.raises(ConfigError, match=r"active_energy_import falls on [\d,]+ of [\d,]+ rows .* use --energy interval"):
        from_csv_dir(d)
    ref = compute_accounts(from_csv_dir(plant_dir), default_settings(from_csv_dir(plant_dir).plant)).plant_totals()
    data = from_csv_dir(d, energy_mode="interval")
    got = compute_accounts(data, default_settings(data.plant)).plant_totals()
    assert got["energy_kwh"] == pytest.approx(ref["energy_kwh"], rel=1e-9)
    assert got["scope2_location_kg"] == pytest.approx(ref["scope2_location_kg"], rel=1e-9)
    assert got["scope1_kg"] == pytest.approx(ref["scope1_kg"], rel=1e-9)


def _meter_csv(path: Path, kwh: np.ndarray, *, counter: bool = False, sep: str = ",") -> Path:
    t0 = np.datetime64("2025-01-01T00:15")
    vals = np.cumsum(kwh) + 52_000.0 if counter else kwh
    lines = [f"time{sep}kWh"] + [f"{t0 + np.timedelta64(15 * i, 'm')}{sep}{v:.3f}" for i, v in enumerate(vals)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _load(n: int = 96 * 14) -> np.ndarray:
    rng = np.random.default_rng(4)
    return np.round(np.clip(200 + 80 * np.sin(np.arange(n) / 96 * 2 * np.pi) + 20 * rng.standard_normal(n), 0, None), 3)


def test_one_meters_time_kwh_csv_gives_scope2_without_a_plant_model(tmp_path: Path) -> None:
    kwh = _load()
    said: list[str] = []
    data = from_meter_csv(_meter_csv(tmp_path / "main-incomer.csv", kwh), announce=said.append)
    assert said and "read as interval consumption" in said[0]
    settings, note = with_grid_factor(default_settings(data.plant), EU)
    assert note and "residual mix" in note
    acc = compute_accounts(data, settings)
    factor = FactorLibrary.load().get(EU).kg_per_kwh
    tot = acc.plant_totals()
    assert tot["energy_kwh"] == pytest.approx(kwh.sum(), rel=1e-12)  # every row, the first one's interval included
    assert tot["scope2_location_kg"] == pytest.approx(kwh.sum() * factor, rel=1e-12)
    assert data.site == "main-incomer"
    # The same meter as a cumulative reading (semicolons): the same energy after the first reading.
    said.clear()
    data = from_meter_csv(_meter_csv(tmp_path / "counter.csv", kwh, counter=True, sep=";"), announce=said.append)
    assert "cumulative meter reading" in said[0]
    assert compute_accounts(data, settings).plant_totals()["energy_kwh"] == pytest.approx(kwh[1:].sum(), rel=1e-9)


def test_a_meter_csv_that_cannot_give_a_right_figure_is_refused(tmp_path: Path) -> None:
    kwh = _load()
    with pytest.raises(ConfigError, match=r"column 'kWh' falls on .* not a cumulative meter reading"):
        from_meter_csv(_meter_csv(tmp_path / "m.csv", kwh), energy_mode="counter")
    # A counter with a few falls (resets and something odd): neither clearly a counter nor interval data.
    c = np.cumsum(kwh) + 1000.0
    c[[100, 300]] = 5.0
    p = tmp_path / "odd.csv"
    p.write_text("time,kWh\n" + "".join(f"{1_735_690_500 + 900 * i},{v}\n" for i, v in enumerate(c)))
    with pytest.raises(ConfigError, match="--energy interval or --energy counter"):
        from_meter_csv(p)
    two = tmp_path / "two.csv"
    two.write_text("time,kWh,kvarh\n2025-01-01T00:15:00,1,2\n2025-01-01T00:30:00,1,2\n")
    with pytest.raises(ConfigError, match="--value-col"):
        from_meter_csv(two)
    neg = tmp_path / "neg.csv"
    neg.write_text("time,kWh\n" + "".join(f"{1_735_690_500 + 900 * i},{-1.0 if i == 7 else 2.0}\n" for i in range(50)))
    with pytest.raises(ConfigError, match="negative on 1 rows"):
        from_meter_csv(neg, energy_mode="interval")


def test_report_cli_on_a_time_kwh_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kwh = _load(96 * 3)
    f = _meter_csv(tmp_path / "meter.csv", kwh)
    assert cli.main(["report", "--csv", str(f), "--grid-factor", EU, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    t = kwh.sum() * FactorLibrary.load().get(EU).kg_per_kwh / 1000.0
    assert f"scope 2 location-based: {t:,.1f} t" in out and "read as interval consumption" in out
    assert cli.main(["report", "--csv", str(f), "--energy", "counter", "--out", str(tmp_path / "o2")]) != 0
    assert "not a cumulative meter reading" in capsys.readouterr().err


def test_interval_rows_stamped_at_their_start_cover_the_hour_after_the_stamp(tmp_path: Path) -> None:
    kwh = _load(96)
    f = _meter_csv(tmp_path / "m.csv", kwh)  # first row stamped 00:15
    end = from_meter_csv(f, energy_mode="interval")
    start = from_meter_csv(f, energy_mode="interval", stamps="start")
    assert end.start == start.start - 900.0 and end.end == start.end - 900.0
    assert start.start == pytest.approx(np.datetime64("2025-01-01T00:15").astype("datetime64[s]").astype(float))
    # Hourly bins: stamped at the start, the 00:15 to 00:45 rows lie in the first hour; at the end, one of them moves back.
    e_end = compute_accounts(end, default_settings(end.plant)).processes["site"].energy_kwh
    e_start = compute_accounts(start, default_settings(start.plant)).processes["site"].energy_kwh
    assert e_end.sum() == pytest.approx(e_start.sum(), rel=1e-12) == pytest.approx(kwh.sum(), rel=1e-12)
    assert e_start[0] == pytest.approx(kwh[:3].sum()) and e_end[0] == pytest.approx(kwh[:4].sum())
    with pytest.raises(ConfigError, match="--stamps"):
        from_meter_csv(f, energy_mode="interval", stamps="middle")


def test_a_european_meter_export_decimal_commas_semicolons_and_day_first_dates(tmp_path: Path) -> None:
    """Read with the CSV helpers every analytics command uses: the date order and decimal comma are announced."""
    kwh = _load(96 * 2)
    t0 = np.datetime64("2025-01-13T00:15")
    rows = []
    for i, v in enumerate(kwh):
        d = (t0 + np.timedelta64(15 * i, "m")).astype(object)
        rows.append(f"{d:%d/%m/%Y %H:%M};{f'{v:.3f}'.replace('.', ',')}")
    f = tmp_path / "zaehler.csv"
    f.write_text("Zeit;kWh\n" + "\n".join(rows) + "\n")
    said: list[str] = []
    data = from_meter_csv(f, announce=said.append)
    assert any("day-first" in s for s in said) and any("decimal comma" in s for s in said), said
    assert compute_accounts(data, default_settings(data.plant)).plant_totals()["energy_kwh"] == pytest.approx(kwh.sum(), rel=1e-12)
    assert data.start == pytest.approx(float(np.datetime64("2025-01-13T00:00").astype("datetime64[s]").astype(int)))
