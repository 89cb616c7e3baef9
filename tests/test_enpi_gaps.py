"""EnPIs when the first hours have no production reading (a plant that starts late, a PLC that answers late)."""

from __future__ import annotations

import math

import numpy as np

from carbonedge.analytics.enpi import EnpiResult, ProcessEnpi, _fit, _nanmax_rows


def test_plant_running_of_hours_no_line_reported_is_unknown_without_warnings() -> None:
    rows = [np.array([np.nan, 0.5, np.nan]), np.array([np.nan, 0.2, 1.0])]
    out = _nanmax_rows(rows)  # pytest turns an All-NaN RuntimeWarning into an error
    assert math.isnan(out[0]) and out[1] == 0.5 and out[2] == 1.0


def test_hours_without_production_write_finite_points_even_without_a_baseline() -> None:
    hours = (1_767_225_600_000 + 3_600_000 * np.arange(6)).astype(np.int64)
    p = ProcessEnpi("eaf", "meltshop", hours, np.array([np.nan, 10.0, 12.0, 11.0, 9.0, 10.0]),
                    np.array([np.nan, np.nan, 1.0, np.nan, 2.0, 1.0]), None)
    _fit(p, {"production": p.production}, int(hours[-1]))  # too few complete hours: no baseline
    assert p.baseline is None and p.note.startswith("no baseline")
    res = EnpiResult("site", "UTC", int(hours[0]), int(hours[-1]) + 3_600_000, int(hours[-1]), {"eaf": p})
    for line in res.lines(("hour", "day")):
        assert "nan" not in line.lower(), line
