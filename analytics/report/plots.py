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


def energy_sec(starts: np.ndarray, energy: dict[str, np.ndarray], output: np.ndarray | None, sec_unit: str, label: str) -> str:
    """Stacked energy per process per period, with plant SEC on a second axis."""
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
        ax2.legend(loc="upper right", fontsize=8, bbox_to_anchor=(1.0, -0.12))
    ax.legend(loc="upper left", fontsize=8, ncol=min(6, len(energy)), bbox_to_anchor=(0.0, -0.12))
    return _svg(fig)


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
    """Per process: measured vs modelled energy per bin, baseline period shaded."""
    n = len(series)
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.9 * n), sharex=True, squeeze=False)
    for ax, (name, starts, actual, pred, base_end) in zip(axes[:, 0], series):
        x = _dt(starts)
        ax.plot(x, actual / 1000.0, color=_COLORS[0], lw=1.0, label="measured")
        ax.plot(x, pred / 1000.0, color=_COLORS[1], lw=1.0, ls="--", label="model (baseline)")
        ax.axvspan(x[0], _dt(np.array([base_end]))[0], color="#999999", alpha=0.15, label="baseline period")
        ax.set_ylabel("MWh/bin")
        ax.set_title(name, loc="left", fontsize=9)
        _timeaxis(ax)
    axes[0, 0].legend(fontsize=8, ncol=3, loc="upper right")
    return _svg(fig)


def cusum(series: list[tuple[str, np.ndarray, np.ndarray]]) -> str:
    """CUSUM of savings, Σ(expected − actual): falling means the process uses more than its baseline [M7]."""
    fig, ax = plt.subplots(figsize=(9, 3.0))
    for i, (name, starts, c) in enumerate(series):
        ax.plot(_dt(starts), c / 1000.0, color=_COLORS[i % len(_COLORS)], lw=1.2, label=name)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("cumulative saving, MWh")
    _timeaxis(ax)
    ax.legend(fontsize=8, ncol=min(6, len(series)), loc="upper left", bbox_to_anchor=(0.0, -0.12))
    return _svg(fig)


def emissions_by_process(names: list[str], s1: list[float], s2: list[float]) -> str:
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.0))
    y = np.arange(len(names))
    ax.barh(y, np.array(s1) / 1000.0, color=_COLORS[3], label="scope 1")
    ax.barh(y, np.array(s2) / 1000.0, left=np.array(s1) / 1000.0, color=_COLORS[0], label="scope 2 (location-based)")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("t CO2 over the period")
    ax.legend(fontsize=8)
    return _svg(fig)


def hints_bar(labels: list[str], cost: list[float], currency: str) -> str:
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(labels) + 1.0))
    y = np.arange(len(labels))
    ax.barh(y, np.array(cost) / 1000.0, color=_COLORS[2])
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"thousand {currency} per year")
    return _svg(fig)
