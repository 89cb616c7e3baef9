"""Baselines on plant-like data: time-of-week model, categories, calendars, CSV dialects, honest figures."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from carbonedge.analytics.baseline import (
    Calendar,
    Fit,
    NaiveTimeOfWeek,
    ashrae14_limit,
    detect_operating_days,
    fit_time_of_week,
    goodness_of_fit,
    limit_text,
    out_of_sample_fit,
    select_time_of_week,
)
from carbonedge.analytics.offline import InputError, _num, baseline_csv, detect_date_order, detect_decimal, format_baseline, parse_timestamp
from carbonedge.app.cli import main

START = datetime(2026, 1, 5)  # a Monday


def _tariff(h: int, month: int) -> str:
    """Korean-style load periods by time of day (the tariff-period column of a utility bill)."""
    if h < 8 or h >= 23:
        return "Light_Load"
    if (10 <= h < 12) or (13 <= h < 17 if month in (6, 7, 8) else 17 <= h < 20):
        return "Maximum_Load"
    return "Medium_Load"


def industrial_rows(weeks: int, seed: int = 1, *, holidays: set[str] = frozenset({"2026-04-03", "2026-04-06", "2026-05-01", "2026-05-14"})) -> list[list[str]]:
    """15-min energy of a steel finishing plant, as a plant export has it: interval-end stamps in
    dd/mm/yyyy HH:MM, semicolons and decimal commas, a tariff-period and a weekday/weekend column.

    Two shifts Monday–Friday (06–22 h), one on Saturday (06–14 h), Sundays and public holidays
    at base load; the day's production varies (±25 %), the 15-min load is noisy, some intervals
    are zero (a furnace off), and the rolling mill runs in bursts within a shift.
    """
    rng = np.random.default_rng(seed)
    rows = []
    n = weeks * 7 * 96
    day_factor = {}
    for i in range(n):
        start = START + timedelta(minutes=15 * i)
        end = start + timedelta(minutes=15)
        d = start.date()
        if d not in day_factor:
            day_factor[d] = float(np.clip(rng.lognormal(0, 0.25), 0.4, 2.0))
        wd = d.weekday()
        hol = d.isoformat() in holidays
        h = start.hour + start.minute / 60
        on = (not hol) and ((wd < 5 and 6 <= h < 22) or (wd == 5 and 6 <= h < 14))
        base = 8.0 + 1.5 * np.sin(2 * np.pi * h / 24)
        load = base + (day_factor[d] * (40 + 15 * np.sin(np.pi * (h - 6) / 16)) * (0.6 + 0.8 * rng.random()) if on else 0.0)
        kwh = max(0.0, load + rng.normal(0, 4))
        if rng.random() < 0.02:
            kwh = 0.0
        rows.append([end.strftime("%d/%m/%Y %H:%M"), f"{kwh:.2f}".replace(".", ","), _tariff(start.hour, start.month),
                     "Weekend" if wd >= 5 else "Weekday"])
    return rows


def _write(path: Path, header: list[str], rows: list[list[str]], sep: str = ";") -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f, delimiter=sep)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def plant_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("plant") / "plant.csv", ["date", "Usage_kWh", "Load_Type", "WeekStatus"], industrial_rows(20))


def _fits(rep, label: str) -> dict[str, tuple[Fit | None, Fit | None]]:
    return {r.resolution: (r.model, r.naive) for r in rep.rows if r.label == label}


def test_industrial_15min_beats_naive_out_of_sample_and_reads_the_export(plant_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "rows.csv"
    rep = baseline_csv(plant_csv, time_col="date", target="Usage_kWh", features=[], categories=["Load_Type", "WeekStatus"],
                       train_until=datetime(2026, 4, 27, tzinfo=UTC).timestamp(), holidays="DE", out=out)
    text = format_baseline(rep, "Usage_kWh")
    # The file's dialect is announced, not guessed silently.
    assert any("day-first" in a for a in rep.announcements)
    assert any("decimal comma" in a for a in rep.announcements)
    assert any("interval ends" in a for a in rep.announcements)
    # Saturday's single shift makes it a short day: operating days are Monday to Friday.
    assert any("operating days: Mon, Tue, Wed, Thu, Fri (" in a for a in rep.announcements), rep.announcements
    assert rep.interval == "15-min" and rep.model_kind == "time-of-week"
    cv = _fits(rep, "training, blocked CV")
    report = _fits(rep, "reporting period")
    assert set(cv) == {"15-min", "hourly", "daily", "monthly"}
    for res in ("15-min", "hourly", "daily"):
        for fits in (cv, report):
            m, nv = fits[res]
            assert m is not None and nv is not None
            # The model earns its keep below a day; a day's total is mostly the day's unforeseeable
            # production, which no calendar model predicts: there it must at least not lose.
            assert m.cv_rmse < nv.cv_rmse if res != "daily" else m.cv_rmse <= 1.01 * nv.cv_rmse, (res, m, nv)
            assert m.p == 0  # out of sample: no parameters spent
    # Limits named per resolution: none published for 15-min and daily data, ASHRAE 14 hourly for hourly.
    assert "no published limit" in text and "ASHRAE 14 (30%, ±10%)" in text and "naive time-of-week" in text
    assert rep.train.verdict("15-min") == "no published limit"
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    expected = [float(r["expected"]) for r in rows if r["expected"]]
    assert min(expected) >= 0.0 and len(expected) == len(rows)
    # Interval-end stamps: the first row (stamped 00:15) is the first interval of the first day.
    assert rows[0]["date"] == "05/01/2026 00:15"


def test_cli_prints_naive_reference_and_json(plant_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["analyze", "baseline", "--csv", str(plant_csv), "--time-col", "date", "--target", "Usage_kWh", "--category", "Load_Type",
               "--train-until", "2026-04-27", "--aggregate", "hour", "--holidays", "DE", "--tz", "Europe/Berlin", "--json"])
    assert rc == 0
    import json

    d = json.loads(capsys.readouterr().out)
    assert d["model"] == "time-of-week" and d["interval"] == "hourly"
    hourly_cv = next(f for f in d["fits"] if f["set"] == "training, blocked CV" and f["resolution"] == "hourly")
    assert hourly_cv["limit"] == {"cv_rmse": 0.30, "nmbe": 0.10} and hourly_cv["naive"]["cv_rmse"] > hourly_cv["model"]["cv_rmse"]
    daily = next(f for f in d["fits"] if f["resolution"] == "daily")
    assert daily["limit"] is None and daily["model"]["verdict"] == "no published limit"


def test_text_column_errors_name_the_column(plant_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kw = dict(time_col="date", target="Usage_kWh", train_until=datetime(2026, 4, 27, tzinfo=UTC).timestamp())
    with pytest.raises(InputError, match=r"column 'Load_Type' \(given with --feature\) cannot be used as a number: .*--category"):
        baseline_csv(plant_csv, features=["Load_Type"], **kw)
    rc = main(["analyze", "baseline", "--csv", str(plant_csv), "--time-col", "date", "--target", "Usage_kWh", "--mean-feature", "WeekStatus",
               "--train-until", "2026-04-27"])
    err = capsys.readouterr().err
    assert rc == 2 and "'WeekStatus'" in err and "--category" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    # A category with one value over the whole training period cannot explain anything.
    rows = industrial_rows(3)
    for r in rows:
        r[2] = "Light_Load"
    one = _write(tmp_path / "one.csv", ["date", "Usage_kWh", "Load_Type", "WeekStatus"], rows)
    with pytest.raises(InputError, match="category column 'Load_Type' has 'Light_Load' in the whole training period"):
        baseline_csv(one, features=[], categories=["Load_Type"], **kw)
    # A column with hundreds of values is not a category.
    with pytest.raises(InputError, match="'Usage_kWh' is the energy column; it cannot also be a --category"):
        baseline_csv(plant_csv, features=[], categories=["Usage_kWh"], **kw)
    rows = industrial_rows(3)
    for i, r in enumerate(rows):
        r[2] = f"batch-{i}"
    many = _write(tmp_path / "many.csv", ["date", "Usage_kWh", "Load_Type", "WeekStatus"], rows)
    with pytest.raises(InputError, match="'Load_Type' has 2016 different values; a category needs at most 50"):
        baseline_csv(many, features=[], categories=["Load_Type"], **kw)


def test_category_level_unseen_in_training_is_not_predicted(tmp_path: Path) -> None:
    rows = industrial_rows(6)
    cut = 5 * 7 * 96
    for r in rows[cut:cut + 96]:
        r[2] = "Critical_Peak"
    p = _write(tmp_path / "new.csv", ["date", "Usage_kWh", "Load_Type", "WeekStatus"], rows)
    out = tmp_path / "o.csv"
    rep = baseline_csv(p, time_col="date", target="Usage_kWh", features=[], categories=["Load_Type"],
                       train_until=datetime(2026, 2, 9, tzinfo=UTC).timestamp(), out=out)
    assert any("96 reporting row(s) with a 'Load_Type' value the training period never had" in n for n in rep.notes)
    o = list(csv.DictReader(io.StringIO(out.read_text())))
    assert all(r["expected"] == "" for r in o[cut:cut + 96]) and all(r["expected"] != "" for r in o[cut + 96:])


def test_dates_decimals_and_delimiters() -> None:
    assert parse_timestamp("31/01/2018 00:15") == datetime(2018, 1, 31, 0, 15, tzinfo=UTC).timestamp()
    assert parse_timestamp("01.02.2018 13:00", "Europe/Berlin") == datetime(2018, 2, 1, 12, 0, tzinfo=UTC).timestamp()
    assert parse_timestamp("31.12.2018 24:00") == datetime(2019, 1, 1, tzinfo=UTC).timestamp()
    assert parse_timestamp("02/03/2018", date_format="mm/dd/yyyy") == datetime(2018, 2, 3, tzinfo=UTC).timestamp()
    assert parse_timestamp("02/03/2018 06:30", date_format="%d/%m/%Y %H:%M") == datetime(2018, 3, 2, 6, 30, tzinfo=UTC).timestamp()
    assert parse_timestamp("2018-03-02T06:30:00Z") == datetime(2018, 3, 2, 6, 30, tzinfo=UTC).timestamp()
    assert parse_timestamp("1520000000") == 1520000000.0  # epoch seconds still read as before
    with pytest.raises(ValueError, match="day/month or month/day"):
        parse_timestamp("02/03/2018")
    assert detect_date_order(["01/02/2018", "13/02/2018"])[0] == "dd/mm/yyyy"
    assert detect_date_order(["02/01/2018", "02/13/2018"])[0] == "mm/dd/yyyy"
    assert detect_date_order(["2018-01-01", "31.01.2018"]) == (None, None)
    with pytest.raises(ValueError, match="give --date-format"):
        detect_date_order(["01/02/2018", "02/03/2018"])
    assert _num("1.234,5", decimal=",") == 1234.5 and _num("12,5", decimal=",") == 12.5
    assert np.isnan(_num("12,5")) and _num(" 3.5 ") == 3.5  # the default is unchanged: a comma is not a decimal mark
    assert detect_decimal({"kwh": ["12,5", "1.234,75", "7"]})[0] == ","
    assert detect_decimal({"kwh": ["12.5", "7"]}) == (".", None)
    with pytest.raises(ValueError, match="both a decimal comma and a decimal point"):
        detect_decimal({"a": ["12,5"], "b": ["1.25"]})


def test_ambiguous_dates_and_mixed_decimals_are_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [[f"{d:02d}/01/2026 {h:02d}:00", f"{10 + h}"] for d in range(1, 13) for h in range(24)]
    p = _write(tmp_path / "amb.csv", ["time", "kwh"], rows, sep=",")
    args = ["analyze", "baseline", "--csv", str(p), "--time-col", "time", "--target", "kwh", "--train-until", "2026-01-09"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "could be day/month or month/day" in err and "--date-format" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--date-format", "dd/mm/yyyy"]) == 0
    assert "naive" in capsys.readouterr().out
    mixed = _write(tmp_path / "mixed.csv", ["time", "kwh", "prod"], [[f"2026-01-{d:02d}T{h:02d}:00", "10,5", "1.25"] for d in range(1, 13) for h in range(24)])
    assert main(["analyze", "baseline", "--csv", str(mixed), "--time-col", "time", "--target", "kwh", "--feature", "prod", "--train-until", "2026-01-09"]) == 2
    assert "--decimal" in capsys.readouterr().err
    assert main(["analyze", "baseline", "--csv", str(mixed), "--time-col", "time", "--target", "kwh", "--train-until", "2026-01-09",
                 "--holidays", "XX"]) == 2
    assert "no public-holiday calendar for 'XX'" in capsys.readouterr().err


def test_interval_end_stamps_put_midnight_into_the_day_before(tmp_path: Path) -> None:
    # 25 days of hourly data stamped at interval ends: 01:00 … 00:00; each day has 24 kWh per hour × its day number.
    rows = []
    for d in range(25):
        for h in range(24):
            end = datetime(2026, 3, 2) + timedelta(days=d, hours=h + 1)
            rows.append([end.isoformat(), str(d + 1)])
    p = _write(tmp_path / "end.csv", ["time", "kwh"], rows, sep=",")
    out = tmp_path / "o.csv"
    baseline_csv(p, time_col="time", target="kwh", features=[], train_until=datetime(2026, 4, 20, tzinfo=UTC).timestamp(), aggregate="day",
                 out=out, operating_days="off")
    days = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [float(r["kwh"]) for r in days] == [24.0 * (d + 1) for d in range(25)]
    start = baseline_csv(p, time_col="time", target="kwh", features=[], train_until=datetime(2026, 4, 20, tzinfo=UTC).timestamp(),
                         aggregate="day", out=out, stamps="start", operating_days="off")
    assert start.train.n == 26  # read as starts, the last stamp (00:00) opens a 26th day


def test_too_little_or_no_training_data_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = datetime(2026, 3, 2)
    one = _write(tmp_path / "one.csv", ["time", "kwh"], [[(t0 + timedelta(hours=h)).isoformat(), str(h)] for h in range(48)], sep=",")
    args = ["analyze", "baseline", "--time-col", "time", "--target", "kwh", "--train-until", "2026-03-20"]
    assert main([*args, "--csv", str(one)]) == 2
    assert "the training period covers 2 day(s); a time-of-week baseline needs at least 7" in capsys.readouterr().err
    empty = _write(tmp_path / "e.csv", ["time", "kwh"], [[(t0 + timedelta(hours=h)).isoformat(), ""] for h in range(24 * 20)], sep=",")
    assert main([*args, "--csv", str(empty)]) == 2
    assert "0 row(s) with a value of 'kwh' in the training period" in capsys.readouterr().err
    bad = _write(tmp_path / "b.csv", ["time", "kwh"], [[(t0 + timedelta(hours=h)).isoformat(), "1"] for h in range(24 * 20)] + [["yesterday", "1"]], sep=",")
    assert main([*args, "--csv", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 482: 'time' = 'yesterday' is not a time (use ISO 8601" in err and len(err.strip().splitlines()) == 1


def test_operating_days_and_holidays_are_learned() -> None:
    t = np.array([(datetime(2026, 3, 2) + timedelta(hours=h)).replace(tzinfo=UTC).timestamp() for h in range(24 * 7 * 10)])
    cal = Calendar("UTC", "DE")
    rows = cal.rows(t)
    rng = np.random.default_rng(3)
    clean = np.where((rows.wk < 5) & (rows.sod >= 6 * 3600) & (rows.sod < 22 * 3600), 100.0, 10.0)
    y = clean + rng.normal(0, 2, t.size)
    od = detect_operating_days(rows, y)
    assert od.mode == "calendar" and od.rule[5] == 0 and od.rule[6] == 0 and all(od.rule[w] == 1 for w in range(5))
    assert od.rule.get(7) == 0  # Good Friday and Easter Monday 2026 fell in the period and were not worked
    assert "Mon, Tue, Wed, Thu, Fri" in od.note and "holiday" not in od.note.split("(")[0]
    m = fit_time_of_week(t, np.zeros((t.size, 0)), y, [], calendar=cal, step=3600.0, alpha=1.0)
    assert m.fit.cv_rmse < 0.06
    # The naive reference is the mean by (operating day, day, hour): exact on noiseless data.
    nv = NaiveTimeOfWeek(m, t, clean)
    assert np.allclose(nv.predict(t), clean)
    with pytest.raises(Exception, match="no public-holiday calendar"):
        Calendar("UTC", "XX").rows(t[:3])


def test_predictions_are_never_negative_even_where_the_fit_would_be() -> None:
    rng = np.random.default_rng(5)
    t = np.array([datetime(2026, 1, 5, tzinfo=UTC).timestamp() + 3600 * h for h in range(24 * 7 * 12)])
    temp = 10 + 8 * np.sin(np.arange(t.size) / (24 * 30)) + rng.normal(0, 2, t.size)
    hour = (np.arange(t.size) % 24)
    y = np.maximum(0.0, np.where((hour >= 8) & (hour < 18), 50.0, 0.0) - 3.0 * (temp - 10) + rng.normal(0, 5, t.size))
    sel = select_time_of_week(t[:1500], temp[:1500, None], y[:1500], ["temp"], calendar=Calendar(), step=3600.0, temperature=["temp"])
    pred = sel.model.predict(t, (temp + 15)[:, None])  # a warmer reporting period drives the line below zero
    assert pred.min() >= 0.0 and (pred == 0).any()
    assert np.all(sel.oof[np.isfinite(sel.oof)] >= 0)


def test_limits_and_degrees_of_freedom() -> None:
    assert ashrae14_limit("hourly") == (0.30, 0.10) and ashrae14_limit("monthly") == (0.15, 0.05)
    assert ashrae14_limit("daily") is None and ashrae14_limit("15-min") is None
    assert limit_text("daily") == "no published limit for daily data"
    y = np.array([100.0, 120.0, 80.0])
    yh = np.array([110.0, 125.0, 90.0])
    f = out_of_sample_fit(y, yh)
    assert f is not None and f.p == 0 and f.nmbe == pytest.approx(-25.0 / (3 * 100.0))  # n, not n - p, degrees of freedom
    assert out_of_sample_fit(y[:2], yh[:2]) is None  # two points make no figure
    inside = goodness_of_fit(y, yh, 2)
    assert inside.nmbe == pytest.approx(-25.0 / (1 * 100.0))
    assert not f.meets("daily") and f.verdict("daily") == "no published limit" and f.verdict("monthly") == "does NOT meet"


def test_three_reporting_months_monthly_figures_have_n_degrees_of_freedom(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    rows = []
    for d in range(365):
        day = datetime(2025, 1, 1) + timedelta(days=d)
        temp = 10 - 10 * np.cos(2 * np.pi * d / 365) + rng.normal(0, 2)
        kwh = (900 if day.weekday() < 5 else 300) + 25 * max(0.0, 15 - temp) + rng.normal(0, 30)
        rows.append([day.strftime("%d.%m.%Y"), f"{kwh:.1f}", f"{temp:.1f}"])
    p = _write(tmp_path / "daily.csv", ["Datum", "kWh", "T_aussen"], rows)
    rep = baseline_csv(p, time_col="Datum", target="kWh", features=[], mean_features=["T_aussen"], train_until=datetime(2025, 10, 1, tzinfo=UTC).timestamp())
    monthly = _fits(rep, "reporting period")["monthly"][0]
    assert monthly is not None and monthly.n == 3 and monthly.p == 0
    assert any("only 3 monthly point(s)" in n for n in rep.notes)
    assert rep.interval == "daily" and rep.train.verdict("daily") == "no published limit"
    cv_daily_model, cv_daily_naive = _fits(rep, "training, blocked CV")["daily"]
    assert cv_daily_model.cv_rmse < cv_daily_naive.cv_rmse


def test_monthly_aggregate_uses_regression_and_monthly_limit(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    rows = []
    for h in range(24 * 400):
        t = datetime(2025, 1, 1) + timedelta(hours=h)
        prod = max(0.0, rng.normal(40, 10))
        rows.append([t.isoformat(), f"{200 + 12 * prod + rng.normal(0, 40):.2f}", f"{prod:.2f}"])
    p = _write(tmp_path / "m.csv", ["time", "kwh", "prod_t"], rows, sep=",")
    rep = baseline_csv(p, time_col="time", target="kwh", features=["prod_t"], train_until=datetime(2025, 11, 1, tzinfo=UTC).timestamp(), aggregate="month")
    assert rep.model_kind == "regression" and rep.interval == "monthly" and rep.limits == "monthly"
    assert rep.train.meets("monthly") and rep.train.p == 2 and rep.baseline.features == ["prod_t"]
    text = format_baseline(rep, "kwh")
    assert "ASHRAE 14 (15%, ±5%)" in text and "naive" in text


def test_out_csv_has_naive_column_and_no_negatives(plant_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    baseline_csv(plant_csv, time_col="date", target="Usage_kWh", features=[], train_until=datetime(2026, 4, 27, tzinfo=UTC).timestamp(),
                 aggregate="day", out=out)
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {"expected", "naive", "residual", "cusum_savings"} <= set(rows[0])
    assert all(float(r["naive"]) >= 0 and float(r["expected"]) >= 0 for r in rows)


def test_a_mode_flag_gets_its_own_effect_on_operating_days_and_days_off() -> None:
    # A school-like year of days: a summer-school flag adds 300 kWh on weekdays and nothing at weekends
    # (the building stays shut); one shared coefficient would split the difference and miss both.
    rng = np.random.default_rng(11)
    days = 364
    t = np.array([datetime(2026, 1, 5, tzinfo=UTC).timestamp() + 86400.0 * d for d in range(days)])
    wk = np.arange(days) % 7
    flag = ((np.arange(days) > 180) & (np.arange(days) < 230)).astype(float)
    y = np.where(wk < 5, 1000.0 + 300.0 * flag, 200.0) + rng.normal(0, 10, days)
    m = fit_time_of_week(t, flag[:, None], y, ["summer_school"], calendar=Calendar(), step=86400.0, alpha=1.0)
    assert m.flags == ["summer_school"]
    assert m.coefficients[0] == pytest.approx(300.0, abs=15)  # its effect on operating days
    assert m.fit.cv_rmse < 0.03
    weekend = (wk >= 5) & (flag > 0)
    assert np.abs(m.predict(t, flag[:, None])[weekend] - 200.0).max() < 20.0
