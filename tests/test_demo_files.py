"""Each demo run writes only its own files: the previous run's outputs go, the user's files stay."""

from __future__ import annotations

import json

from carbonedge.app.demo import MANIFEST, _record, clear_previous_run


def test_a_battery_run_after_a_steel_run_leaves_no_steel_exports(tmp_path):
    out = tmp_path / "demo-out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # the user's own file
    for name in ("summary.json", "report.html", "report.json", "cbam-steel.json", "cbam-steel.csv"):  # the steel run
        _record(out, name).write_text("{}")
    (out / "logs").mkdir()
    (out / "logs" / "edge.log").write_text("x")
    assert json.loads((out / MANIFEST).read_text())[-1] == "cbam-steel.csv"
    removed = clear_previous_run(out)  # the battery run starts
    assert sorted(removed) == sorted(["summary.json", "report.html", "report.json", "cbam-steel.json", "cbam-steel.csv"])
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    for name in ("summary.json", "battery-cfp.json"):
        _record(out, name).write_text("{}")
    assert json.loads((out / MANIFEST).read_text()) == ["summary.json", "battery-cfp.json"]


def test_a_directory_from_before_the_manifest_is_cleared_of_demo_outputs_only(tmp_path):
    for name in ("report.html", "cbam-steel.json", "plant.json", "my-analysis.csv"):
        (tmp_path / name).write_text("x")
    clear_previous_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-analysis.csv", "plant.json"]


def test_a_manifest_never_reaches_outside_the_directory(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "precious.txt").write_text("x")
    (out / MANIFEST).write_text(json.dumps(["../precious.txt", "/etc/passwd"]))
    clear_previous_run(out)
    assert (tmp_path / "precious.txt").exists()
