"""Plots for the HTML report, rendered by matplotlib to inline SVG (no files, no scripts, no network)."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: never touch a display

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_COLORS = ["#1f5f8b", "#e07b39", "#3a9b5c", "#b8403a", "#7b5ea7", "#8c6d31", "#d4a017", "#4aa3a2", "#6b6b6b", "#c1507c",
           "#9ecae1", "#fdae6b", "#a1d99b", "#fc9272", "#bcbddc", "#c7a76c", "#f2d16b", "#9fd3d2", "#bdbdbd", "#e7a1c0"]
plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none",
                     "figure.dpi": 96, "axes.grid": True, "grid.alpha": 0.25})


def complete_bins(edges: np.ndarray) -> tuple[int, str | None]:
    """How many leading bins of ``edges`` (n + 1 boundaries) are whole, and a note about a partial last bin.

    A period that ends a minute into an hour gives a one-minute last bin: drawn as a full bin it would
    look like a plant trip. It is left out of per-bin plots, and the figure says so."""
    n = int(edges.size) - 1
    if n < 2:
        return max(n, 0), None
    widths = np.diff(edges)
    nominal = float(np.median(widths[:-1]))
    last = float(widths[-1])
    if last >= nominal * 0.999:
        return n, None
    minutes = last / 60.0
    span = f"{minutes:.0f} min" if minutes >= 1 else f"{last:.0f} s"
    return n - 1, f"The last bin ({span} of {nominal / 3600.0:g} h) is partial and not drawn."


def _note(fig: Any, text: str | None) -> None:
    """A remark about the figure, above everything in it (below, it would collide with a legend under the plot)."""
    if text:
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        top = max(a.get_tightbbox(r).y1 for a in fig.axes) / fig.bbox.height
        fig.text(0.01, top + 0.01, text, fontsize=8, color="#555555", ha="left", va="bottom")


def _below(ax: Any, handles: list[Any], labels: list[str], *, y: float = -0.14) -> Any:
    """One legend under the plot area (never over data), wrapped into rows of at most 6 entries."""
    return ax.legend(handles, labels, loc="upper left", fontsize=8, ncol=min(6, max(1, len(labels))), bbox_to_anchor=(0.0, y),
                     frameon=False)


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    s = buf.getvalue()
    return s[s.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG is inlined in HTML


def _dt(t: np.ndarray) -> np.ndarray:
    return np.array(t * 1000, dtype="datetime64[ms]")


def _timeaxis(ax: Any) -> None:
    loc = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))


def energy_sec(starts: np.ndarray, energy: dict[str, np.ndarray], output: np.ndarray | None, sec_unit: str, label: str,
               edges: np.ndarray | None = None) -> str:
    """Stacked energy per process per period, with plant SEC on a second axis."""
    return _svg(energy_sec_figure(starts, energy, output, sec_unit, label, edges))


def energy_sec_figure(starts: np.ndarray, energy: dict[str, np.ndarray], output: np.ndarray | None, sec_unit: str, label: str,
                      edges: np.ndarray | None = None) -> Any:
    """The figure behind :func:`energy_sec`. ``edges`` (n + 1 bin boundaries) lets a partial last bin be left out."""
    note = None
    if edges is not None:
        n, note = complete_bins(edges)
        starts, energy = starts[:n], {k: v[:n] for k, v in energy.items()}
        output = output[:n] if output is not None else None
    fig, ax = plt.subplots(figsize=(9, 3.4))
    x = _dt(starts)
    width = (starts[1] - starts[0]) / 86400.0 * 0.9 if starts.size > 1 else 0.8
    bottom = np.zeros(starts.size)
    for i, (name, e) in enumerate(energy.items()):
        ax.bar(x, e / 1000.0, width=width, bottom=bottom, color=_COLORS[i % len(_COLORS)], label=name, align="edge")
        bottom += e / 1000.0
    ax.set_ylabel(f"energy per {label}, MWh")
    _timeaxis(ax)
    if output is not None and np.nansum(output) > 0:
        ax2 = ax.twinx()
        with np.errstate(divide="ignore", invalid="ignore"):
            sec = np.where(output > 0, bottom * 1000.0 / output, np.nan)
        ax2.plot(x + np.timedelta64(int(width * 43_200_000), "ms"), sec, "k.-", lw=1.2, label=f"plant SEC ({sec_unit})")
        ax2.set_ylabel(f"SEC, {sec_unit}")
        ax2.grid(False)
        ax2.set_ylim(bottom=0)
    # One legend for both axes, below the plot: a second legend used to sit on the SEC line or the bars.
    handles, labels = ax.get_legend_handles_labels()
    for other in fig.axes[1:]:
        h, lab = other.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    _below(ax, handles, labels)
    _note(fig, note)
    return fig


def load_profile(hours: np.ndarray, kw: dict[str, np.ndarray]) -> str:
    """Mean kW by hour of day (plant-local) per process."""
    fig, ax = plt.subplots(figsize=(9, 3.0))
    for i, (name, k) in enumerate(kw.items()):
        prof = [float(np.nanmean(k[hours == h])) if np.any(hours == h) else np.nan for h in range(24)]
        ax.plot(range(24), np.array(prof) / 1000.0, marker="o", ms=3, color=_COLORS[i % len(_COLORS)], label=name)
    ax.set_xticks(range(0, 24, 2))
    ax.set_xlabel("hour of day (plant time)")
    ax.set_ylabel("mean load, MW")
    ax.legend(fontsize=8, ncol=min(6, len(kw)), loc="upper left", bbox_to_anchor=(0.0, -0.18))
    return _svg(fig)


def baseline_vs_actual(series: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]]) -> str:
    """Per process: measured vs modelled energy per bin, baseline period shaded.

    Each entry is ``(name, edges, actual, predicted, baseline_end)`` with ``edges`` the n + 1 bin
    boundaries (n bin starts are accepted too, without the partial-bin check)."""
    return _svg(baseline_vs_actual_figure(series))


def baseline_vs_actual_figure(series: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]]) -> Any:
    n = len(series)
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.9 * n), sharex=True, squeeze=False)
    notes = set()
    for ax, (name, edges, actual, pred, base_end) in zip(axes[:, 0], series):
        k, note = complete_bins(edges) if edges.size == actual.size + 1 else (actual.size, None)
        if note:
            notes.add(note)
        x = _dt(edges[:k])
        ax.plot(x, actual[:k] / 1000.0, color=_COLORS[0], lw=1.0, label="measured")
        ax.plot(x, pred[:k] / 1000.0, color=_COLORS[1], lw=1.0, ls="--", label="model (baseline)")
        ax.axvspan(x[0], _dt(np.array([base_end]))[0], color="#999999", alpha=0.15, label="baseline period")
        ax.set_ylabel("MWh/bin")
        ax.set_title(name, loc="left", fontsize=9)
        _timeaxis(ax)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    # Above the first plot, outside every plot area (inside the top-right corner it covered the measured line).
    axes[0, 0].legend(handles, labels, fontsize=8, ncol=3, loc="lower right", bbox_to_anchor=(1.0, 1.02), frameon=False)
    _note(fig, " ".join(sorted(notes)) or None)
    return fig


#: Why a CUSUM line may stop before the period ends.
UNCOUNTED_NOTE = ("CUSUM lines of batch processes end with the last bin before their last counted output: energy drawn after "
                  "it belongs to a batch counted after the period (a heat tapped later), with nothing to set it against.")


def cusum_points(edges: np.ndarray, actual: np.ndarray, pred: np.ndarray,
                 counted_until: float | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Bin starts and CUSUM of savings Σ(expected − actual) over whole bins, up to ``counted_until``.

    ``edges`` are the n + 1 bin boundaries. A partial last bin is left out (a plot of it reads as a
    trip). For a batch process ``counted_until`` is its last counted output (the last tap): only bins
    that end by then are summed, since energy drawn after it belongs to a batch not yet counted and
    would show as a false drop in the last hour.
    """
    k, note = complete_bins(edges)
    notes = [note] if note else []
    if counted_until is not None:
        last = int(np.searchsorted(edges[1: k + 1], counted_until, side="right"))
        if last < k:
            k = max(last, 1)
            notes.append(UNCOUNTED_NOTE)
    return edges[:k], np.cumsum(pred[:k] - actual[:k]), notes


def cusum(series: list[tuple[str, np.ndarray, np.ndarray]], notes: list[str] | None = None) -> str:
    """CUSUM of savings, Σ(expected − actual): falling means the process uses more than its baseline [M7]."""
    return _svg(cusum_figure(series, notes))


def cusum_figure(series: list[tuple[str, np.ndarray, np.ndarray]], notes: list[str] | None = None) -> Any:
    fig, ax = plt.subplots(figsize=(9, 3.0))
    for i, (name, starts, c) in enumerate(series):
        ax.plot(_dt(starts), c / 1000.0, color=_COLORS[i % len(_COLORS)], lw=1.2, label=name)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("cumulative saving, MWh")
    _timeaxis(ax)
    ax.legend(fontsize=8, ncol=min(6, len(series)), loc="upper left", bbox_to_anchor=(0.0, -0.12))
    _note(fig, " ".join(dict.fromkeys(notes or [])) or None)
    return fig


def emissions_by_process(names: list[str], s1: list[float], s2: list[float]) -> str:
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.0))
    y = np.arange(len(names))
    ax.barh(y, np.array(s1) / 1000.0, color=_COLORS[3], label="scope 1")
    ax.barh(y, np.array(s2) / 1000.0, left=np.array(s1) / 1000.0, color=_COLORS[0], label="scope 2 (location-based)")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("t CO2 over the period")
    h, lab = ax.get_legend_handles_labels()
    ax.legend(h, lab, fontsize=8, ncol=2, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _svg(fig)


def hints_bar(labels: list[str], cost: list[float], currency: str) -> str:
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(labels) + 1.0))
    y = np.arange(len(labels))
    ax.barh(y, np.array(cost) / 1000.0, color=_COLORS[2])
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"thousand {currency} per year")
    return _svg(fig)
