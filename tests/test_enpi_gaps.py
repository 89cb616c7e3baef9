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


def test_baseline_coefficients_keep_physical_signs() -> None:
    """A caster's output follows its running hours almost exactly, so an unconstrained fit splits the energy between them
    freely and can give a negative kWh per tonne (the ladle furnace showed -0.24 kWh/t). The EnPI baseline is refitted
    by bounded least squares: base load and every coefficient >= 0, and the one held at 0 is named."""
    from carbonedge.analytics.baseline import fit_baseline

    rng = np.random.default_rng(3)
    n = 48
    hours = (1_767_225_600_000 + 3_600_000 * np.arange(n)).astype(np.int64)
    run = np.clip(rng.uniform(0.2, 1.0, n), 0, 1)
    prod = 120.0 * run + rng.normal(0, 1.0, n)  # output tracks running time
    energy = 300.0 + 3_600.0 * run - 5.0 * (prod - 120.0 * run) + rng.normal(0, 0.5, n)  # more output at the same time: a bit less energy
    X = np.column_stack([prod, run])
    free = fit_baseline(X[: n // 2], energy[: n // 2], ["production", "productive_h"])
    assert free.coefficients[0] < 0  # the unconstrained fit: negative energy per tonne
    p = ProcessEnpi("caster", "casting", hours, energy.copy(), prod.copy(), run.copy())
    _fit(p, {"production": p.production, "productive_h": p.running}, int(hours[n // 2]))
    b = p.baseline
    assert b is not None and b.intercept >= 0 and all(c >= 0 for c in b.coefficients)
    assert b.coefficients[0] == 0.0 and b.trained_on["at_bound"] == ["production"]
    assert b.fit.cv_rmse < 0.05 and abs(b.fit.nmbe) < 0.01  # still a good baseline
    assert "held at 0" in EnpiResult("s", "UTC", int(hours[0]), int(hours[-1]), int(hours[n // 2]), {"caster": p}).table()


def test_a_baseline_with_physical_signs_is_left_as_fitted() -> None:
    from carbonedge.analytics.baseline import fit_baseline
    from carbonedge.analytics.enpi import _physical

    rng = np.random.default_rng(4)
    x = rng.uniform(0, 100, 40)
    y = 50.0 + 2.0 * x + rng.normal(0, 1.0, 40)
    b = fit_baseline(x.reshape(-1, 1), y, ["production"])
    assert _physical(b, x.reshape(-1, 1), y) is b
