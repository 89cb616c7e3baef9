"""The carbon and optimisation report: files, report.json schema, CLI, and rendering in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from carbon_synth import make_plant

from carbonedge.analytics.carbon import default_settings, from_csv_dir
from carbonedge.analytics.report import build_report, validate

SECTIONS = ("summary", "emissions", "products", "exports", "hints", "energy", "factors", "sources")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("plant")
    make_plant(d, days=4, seed=8, faults=[{"kind": "compressed_air_leak", "process": "compressed_air",
                                           "start": "2026-01-07T00:00:00Z", "end": None, "kw": 200.0}])
    out = tmp_path_factory.mktemp("report")
    lines: list[str] = []
    data = from_csv_dir(d)
    build_report(data, default_settings(data.plant), out, progress=lines.append)
    assert [x[:5] for x in lines if x.startswith("[")] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]
    return out


def test_report_files_and_json(report_dir: Path) -> None:
    names = sorted(p.name for p in report_dir.iterdir())
    assert names == ["cbam-communication.json", "cbam-communication.xlsx", "china-ets-steel.json", "china-ets-steel.xlsx", "pcf-iso14067.json",
                     "report.html", "report.json"]
    rep = json.loads((report_dir / "report.json").read_text())
    validate(rep, "report")
    assert rep["factor_libraries"] == ["carbonedge-ef@2026.2"]
    em = rep["emissions"]
    assert sum(p["scope2_location_kg"] for p in em["by_process"].values()) / 1000 == pytest.approx(em["scope2_location_t"], rel=1e-9)
    assert rep["hints"][0]["rank"] == 1 and any(h["kind"] == "compressed_air_leak" for h in rep["hints"])
    assert rep["exports"]["files"] == ["cbam-communication.json", "cbam-communication.xlsx", "china-ets-steel.json", "china-ets-steel.xlsx",
                                      "pcf-iso14067.json"]
    html = (report_dir / "report.html").read_text()
    # Self-contained: no scripts, no external resources.
    assert "<script" not in html and not re.search(r"""(src|href)=["']https?:""", html)
    assert "carbonedge-ef@2026.2" in html and "cn.grid.national-average.2023" in html
    for s in SECTIONS:
        assert f'id="{s}"' in html


def test_cli_report_from_offline_export(tmp_path: Path) -> None:
    d = tmp_path / "plant"
    make_plant(d, days=1, seed=9)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "carbonedge.app.cli", "report", "--csv", str(d), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "[5/5] Writing report.html" in p.stdout and "Scope 1:" in p.stdout
    assert (out / "report.html").exists() and (out / "cbam-communication.xlsx").exists()
    bad = subprocess.run([sys.executable, "-m", "carbonedge.app.cli", "report", "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "needs --plant FILE, --from and --to" in bad.stderr


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("Debian chromium is not installed: `./run test` installs it (apt-get install chromium)")
    return exe


def _render(html: Path, tmp: Path) -> tuple[str, list[str], np.ndarray]:
    """Load ``html`` in headless Chromium: DOM after load, console messages, screenshot pixels."""
    exe = _chromium()
    shot = tmp / "shot.png"
    common = [exe, *CHROMIUM_FLAGS, "--enable-logging=stderr", "--v=0", "--window-size=1200,1800"]
    dom = subprocess.run([*common, f"--user-data-dir={tmp / 'profile-dom'}", "--dump-dom", html.as_uri()],
                         capture_output=True, text=True, timeout=120)
    shot_run = subprocess.run([*common, f"--user-data-dir={tmp / 'profile-shot'}", f"--screenshot={shot}", html.as_uri()],
                              capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and shot_run.returncode == 0, dom.stderr[-2000:] + shot_run.stderr[-2000:]
    console = [ln for ln in (dom.stderr + shot_run.stderr).splitlines() if ":CONSOLE" in ln]
    import matplotlib.image as mpimg

    return dom.stdout, console, mpimg.imread(shot)


def test_report_renders_in_headless_chromium(report_dir: Path, tmp_path: Path) -> None:
    dom, console, px = _render(report_dir / "report.html", tmp_path)
    assert console == []
    for s in SECTIONS:
        assert f'id="{s}"' in dom, s
    assert "Ranked optimisation hints" in dom and "EU CBAM communication to importers" in dom and "China national ETS" in dom
    assert dom.count("<svg") >= 5
    # Non-blank: a real page has many distinct colours and a good share of non-white pixels.
    rgb = px[..., :3]
    assert rgb.shape[0] >= 1000
    non_white = float((rgb.min(axis=2) < 0.95).mean())
    assert non_white > 0.05, non_white
    assert len(np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50


def test_chromium_check_catches_console_errors_and_blank_pages(tmp_path: Path) -> None:
    """The checks above can fail: a page with a script error and a blank page are both caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><script>console.error("bad"); notDefined();</script></body></html>')
    _, console, px = _render(bad, tmp_path)
    assert any("notDefined" in c for c in console)
    assert float((px[..., :3].min(axis=2) < 0.95).mean()) < 0.01


def test_report_lists_unusual_periods_from_the_streaming_detector(report_dir: Path) -> None:
    """The leak (200 kW from 2026-01-07 00:00) is the one unusual period: found in its first hour, sized, then the new normal."""
    rep = json.loads((report_dir / "report.json").read_text())
    eps = rep["unusual_periods"]
    assert [e["process"] for e in eps] == ["compressed_air"]
    e = eps[0]
    assert e["start"] == "2026-01-07T00:00:00Z" and e["accepted_as_new_normal"]
    assert e["excess_kwh"] == pytest.approx(200.0 * e["bins"], rel=0.1)
    assert "Unusual periods" in (report_dir / "report.html").read_text()


def test_report_models_show_model_sec_and_why_enpi_coefficients_differ(report_dir: Path) -> None:
    """Each process model with output carries its energy per unit over the baseline (what the EnPI baseline must match),
    every coefficient is >= 0, and the report states why the EnPI and model coefficients may differ."""
    from carbonedge.analytics.report.build import MODELS_VS_ENPI

    rep = json.loads((report_dir / "report.json").read_text())
    with_output = [m for m in rep["models"].values() if m["sec"] is not None]
    assert with_output and all(m["modelled_sec"] > 0 for m in with_output)
    for m in rep["models"].values():
        assert m["p_active_kw"] >= 0 and (m["p_idle_kw"] or 0) >= 0 and (m["sec"] or 0) >= 0
    html = (report_dir / "report.html").read_text()
    assert "model SEC" in html and MODELS_VS_ENPI.split(";")[0].replace("'", "&#x27;") in html
