"""The report's plots as rendered: a partial last bin is not drawn as a collapse, and no legend sits on a plot.

Each figure is rendered to pixels with the same matplotlib figure the report inlines as SVG, and the
checks look at the rendered image and the rendered positions of legends and plot areas.
"""

from __future__ import annotations

import numpy as np
import pytest

from carbonedge.analytics.report import plots

H = 3600.0
T0 = 1_767_571_200.0


def _pixels(fig):  # type: ignore[no-untyped-def]
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].astype(int)


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def _legends(fig):  # type: ignore[no-untyped-def]
    return [leg for ax in fig.axes for leg in [ax.get_legend()] if leg is not None] + list(fig.legends)


def _no_legend_over_a_plot(fig) -> None:  # type: ignore[no-untyped-def]
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    legs = _legends(fig)
    for i, leg in enumerate(legs):
        lb = leg.get_window_extent(r)
        name = [t.get_text() for t in leg.get_texts()]
        for ax in fig.axes:
            assert not lb.overlaps(ax.get_window_extent(r)), f"legend {name} covers a plot"
            labels = [t for t in (*ax.get_xticklabels(), *ax.get_yticklabels(), ax.xaxis.get_offset_text(), ax.xaxis.label)
                      if t.get_visible() and t.get_text()]
            for t in labels:
                assert not lb.overlaps(t.get_window_extent(r)), f"legend {name} covers the axis text {t.get_text()!r}"
        for other in legs[i + 1:]:
            assert not lb.overlaps(other.get_window_extent(r)), f"legend {name} covers another legend"
        for t in fig.texts:
            assert not lb.overlaps(t.get_window_extent(r)), f"legend {name} covers the note {t.get_text()!r}"
    for t in fig.texts:
        for ax in fig.axes:
            assert not t.get_window_extent(r).overlaps(ax.get_tightbbox(r)), f"the note {t.get_text()!r} covers a plot or its labels"


def _hourly(n_full: int, tail_s: float) -> np.ndarray:
    return np.concatenate([T0 + np.arange(n_full + 1) * H, [T0 + n_full * H + tail_s]])


def test_a_partial_last_bin_is_not_drawn_as_a_drop_to_zero():
    edges = _hourly(48, 60.0)  # 48 whole hours and one minute
    actual = np.full(49, 100_000.0)
    actual[-1] = 100_000.0 / 60  # one minute of the same load
    fig = plots.baseline_vs_actual_figure([("eaf", edges, actual, actual * 0.98, T0 + 24 * H)])
    img = _pixels(fig)
    ax = fig.axes[0]
    bb = ax.get_window_extent(fig.canvas.get_renderer())
    h = img.shape[0]
    top, bottom = int(h - bb.y1), int(h - bb.y0)
    left, right = int(bb.x0), int(bb.x1)
    inside = img[top:bottom, left:right]
    hit = np.all(np.abs(inside - _rgb("#1f5f8b")) <= 40, axis=2)  # the 'measured' line
    cols = np.where(hit.any(axis=0))[0]
    assert cols.size, "the measured line is not in the picture"
    last_col = hit[:, cols.max() - 2: cols.max() + 1]
    rows = np.where(last_col.any(axis=1))[0]
    # The line ends where it ran (the upper part of the plot), not at the bottom as a one-minute bin would put it.
    assert rows.max() < 0.5 * (bottom - top), f"the measured line ends at row {rows.max()} of {bottom - top}"
    _no_legend_over_a_plot(fig)
    notes = [t.get_text() for t in fig.texts]
    assert any("last bin (1 min of 1 h) is partial and not drawn" in n for n in notes), notes
    assert ax.lines[0].get_xdata().size == 48


def test_whole_bins_are_all_drawn_without_a_note():
    edges = _hourly(48, H)  # the last bin is whole
    actual = np.full(49, 100_000.0)
    fig = plots.baseline_vs_actual_figure([("eaf", edges, actual, actual, T0 + 24 * H)])
    assert fig.axes[0].lines[0].get_xdata().size == 49 and not fig.texts


def test_the_energy_and_sec_plot_has_one_legend_below_the_plot_and_drops_a_partial_day():
    edges = np.concatenate([T0 + np.arange(8) * 86400.0, [T0 + 7 * 86400.0 + 3600.0]])  # 7 days and one hour
    energy = {f"process {i}": np.full(8, 1e6 * (i + 1)) for i in range(9)}
    output = np.full(8, 3000.0)
    fig = plots.energy_sec_figure(edges[:-1], energy, output, "kWh/t", "day", edges=edges)
    _no_legend_over_a_plot(fig)
    legs = _legends(fig)
    assert len(legs) == 1 and "plant SEC (kWh/t)" in [t.get_text() for t in legs[0].get_texts()]
    assert len(fig.axes[0].patches) == 9 * 7  # 7 whole days of bars per process, the 1-hour day left out
    _no_legend_over_a_plot(fig)
    assert any("partial" in t.get_text() for t in fig.texts)


def test_no_legend_covers_a_plot_in_any_figure():
    edges = _hourly(72, H)
    a = np.abs(np.sin(np.arange(73))) * 1e5 + 5e4
    _no_legend_over_a_plot(plots.baseline_vs_actual_figure([(f"p{i}", edges, a, a * 1.1, T0 + 24 * H) for i in range(5)]))
    import matplotlib.pyplot as plt

    for svg_fn, args in ((plots.emissions_by_process, (["eaf", "caster", "ladle_furnace"], [5e5, 1e4, 2e4], [9e6, 2e6, 1e6])),):
        before = set(plt.get_fignums())
        orig = plots._svg
        captured = []
        plots._svg = lambda fig: captured.append(fig) or ""  # type: ignore[assignment]
        try:
            svg_fn(*args)
        finally:
            plots._svg = orig  # type: ignore[assignment]
        assert captured and set(plt.get_fignums()) >= before
        _no_legend_over_a_plot(captured[0])
        plt.close(captured[0])


def test_cusum_leaves_out_the_partial_bin_and_the_batch_not_yet_counted():
    """The EAF's last heat draws energy before the period ends but is tapped (counted) after it: with no output to set
    against that energy the CUSUM fell in the last hour. The line now ends with the last bin that ends by the last tap,
    and the figure says why."""
    edges = _hourly(10, 60.0)  # 10 whole hours and one minute
    pred = np.full(11, 50_000.0)
    pred[-1] = 50_000.0 / 60
    actual = pred.copy()
    actual[8:10] = 60_000.0  # melting for a heat tapped after the period: more energy than the expectation
    last_tap = T0 + 8 * H + 1200.0  # the last count, 20 min into hour 8
    starts, c, notes = plots.cusum_points(edges, actual, pred, last_tap)
    assert starts.size == 8 and c[-1] == pytest.approx(0.0)
    assert plots.UNCOUNTED_NOTE in notes and any("partial" in n for n in notes)
    fig = plots.cusum_figure([("eaf", starts, c)], notes)
    assert fig.axes[0].lines[0].get_xdata().size == 8
    assert any("last counted output" in t.get_text() for t in fig.texts)
    _no_legend_over_a_plot(fig)
    # A continuous line or a utility (no batch count): only the partial bin goes.
    starts, _, notes = plots.cusum_points(edges, actual, pred)
    assert starts.size == 10 and plots.UNCOUNTED_NOTE not in notes
    # A last count at the very end of the whole bins cuts nothing.
    starts, _, notes = plots.cusum_points(edges, actual, pred, T0 + 10 * H)
    assert starts.size == 10 and plots.UNCOUNTED_NOTE not in notes
