"""The plant model (``carbonedge/plant.py``): what every analytics path reads, its schema, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from carbonedge import plant as plant_mod
from carbonedge.app import cli
from carbonedge.errors import ConfigError
from carbonedge.plant import PlantModel, check_file

ROOT = Path(__file__).resolve().parents[1]


def _steel() -> dict[str, Any]:
    return {
        "plant": "steel", "site": "steel-a", "sec_unit": "kWh/t", "energy_quantity": "active_energy_import",
        "production_quantity": "production_mass", "output_process": "caster",
        "processes": {
            "eaf": {"area": "meltshop", "production_unit": "t", "meters": ["eaf-meter"], "counters": ["eaf-line"],
                    "flow_meters": [{"device": "eaf-gas", "medium": "gas", "quantity": "gas_volume", "flow_quantity": "gas_flow"}]},
            "caster": {"area": "caster", "production_unit": "t", "meters": ["caster-meter"], "counters": ["caster-line"]},
            "compressed_air": {"area": "utilities", "meters": ["air-meter"], "counters": []},
        },
        "calendar": {"shifts": ["Mon-Fri 06:00-22:00"], "utc_offset_h": 1},
        "tariffs": {"currency": "EUR", "bands": [{"name": "peak", "windows": ["Mon-Fri 08:00-20:00"], "price_per_kwh": 0.21}]},
    }


def test_the_exported_schema_is_the_models_schema() -> None:
    """docs/plant-model.schema.json is what the models accept: regenerate it with `python -m carbonedge.plant --write-schema`."""
    assert plant_mod.SCHEMA_PATH == ROOT / "docs" / "plant-model.schema.json"
    assert plant_mod.SCHEMA_PATH.read_text() == plant_mod.schema_text(), \
        "docs/plant-model.schema.json is out of date: run `python -m carbonedge.plant --write-schema`"
    schema = json.loads(plant_mod.SCHEMA_PATH.read_text())
    assert schema["$id"] == plant_mod.SCHEMA_ID and schema["additionalProperties"] is False
    assert set(schema["required"]) == {"site", "processes"}
    assert "plant-model.schema.json" in (ROOT / "docs" / "plant-model.md").read_text()


def test_the_schema_and_the_model_agree_on_good_and_bad_files() -> None:
    """A third-party JSON Schema validator (what an engineer's editor uses) accepts and refuses what the model does, for the structure."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(plant_mod.SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    good = _steel()
    PlantModel.model_validate(good)
    assert not list(v.iter_errors(good))
    for bad in ({**good, "sitee": "x"}, {**good, "processes": {}}, {**good, "site": "has space"},
                {**good, "processes": {"eaf": {**good["processes"]["eaf"], "production_unit": "tonnes"}}}):
        assert list(v.iter_errors(bad)), bad
        with pytest.raises(ConfigError):
            PlantModel.from_dict(bad)


@pytest.mark.parametrize("kind", ["steel", "battery"])
def test_the_simulators_plant_models_validate(kind: str, tmp_path: Path) -> None:
    from carbonedge.simulators import Scenario, generate

    sc = Scenario.from_dict({"scenario": {"plant": kind, "seed": 1, "start": "2026-01-05T00:00:00Z", "duration": "10m",
                                          "poll_interval": "60s"}}, source="test")
    run = generate(sc, tmp_path)
    m = PlantModel.load(tmp_path / "plant.json")
    assert m.plant == kind and m.output_process in m.processes
    # Nothing is lost or invented on the way through the model.
    on_disk = json.loads((tmp_path / "plant.json").read_text())
    assert m.to_dict()["processes"] == on_disk["processes"] == run.plant["processes"]
    # Every device the simulator serves is in exactly one process (the weather station aside).
    assert len(m.devices()) == len(set(m.devices()))


@pytest.mark.parametrize("scenario", sorted(p.name for p in (ROOT / "simulators" / "scenarios").glob("*.toml")))
def test_every_shipped_scenarios_plant_model_validates(scenario: str) -> None:
    from carbonedge.simulators import Simulation
    from carbonedge.simulators.scenario import load_scenario

    sc = load_scenario(ROOT / "simulators" / "scenarios" / scenario)
    PlantModel.model_validate(Simulation.from_scenario(sc).plant_model(sc.site))


def test_questions_the_analytics_ask() -> None:
    m = PlantModel.from_dict(_steel())
    assert m.devices() == ["eaf-meter", "eaf-gas", "eaf-line", "caster-meter", "caster-line", "air-meter"]
    assert m.processes["eaf"].metering_devices() == ["eaf-meter", "eaf-gas"]
    assert m.process_of("eaf-gas") == "eaf" and m.process_of("nope") is None
    assert m.production_quantity_of("eaf") == "production_mass"
    assert m.production_quantity_of("compressed_air") == "production_mass"  # a utility: the plant's
    cells = PlantModel.from_dict({"site": "c", "plant": "battery", "production_quantity": "production_capacity",
                                  "processes": {"formation": {"production_unit": "kWh", "counters": ["f"]},
                                                "stacking": {"production_unit": "pcs", "counters": ["s"]}}})
    assert cells.production_quantity_of("formation") == "production_capacity"
    assert cells.production_quantity_of("stacking") == "production_count"
    assert cells.sec_label == "kWh/kWh" and m.sec_label == "kWh/t"
    assert m.tariffs is not None and m.tariffs.bands[0].price_per_kwh == 0.21
    assert m.with_site("steel-b").site == "steel-b" and m.site == "steel-a"
    with pytest.raises(ConfigError, match="site"):
        m.with_site("no spaces allowed")
    # Older skeletons wrote "tariffs": [] for "none".
    assert PlantModel.from_dict({**_steel(), "tariffs": []}).tariffs is None


@pytest.mark.parametrize("change, key, reason", [
    (lambda d: d.update(sitee="x"), "sitee", "unknown key"),
    (lambda d: d.pop("site"), "site", "missing"),
    (lambda d: d.update(output_process="converter"), "(top level)", "output_process 'converter' is not one of the processes"),
    (lambda d: d.update(output_process="TODO"), "output_process", "'TODO' left in the file"),
    (lambda d: d["processes"]["eaf"].update(production_unit="tonnes"), "processes.eaf.production_unit", "'t', 'pcs' or 'kWh'"),
    (lambda d: d["processes"]["eaf"].update(production_unit=None), "processes.eaf", "production counters but no production_unit"),
    (lambda d: d["processes"]["caster"]["meters"].append("eaf-meter"), "(top level)", "device 'eaf-meter' is in processes.eaf.meters and in processes.caster.meters"),
    (lambda d: d["processes"]["eaf"]["flow_meters"][0].update(quantity="oxygen_volume"), "processes.eaf.flow_meters.0", "a gas meter counts gas_volume"),
    (lambda d: d.update(energy_quantity="gas_volume"), "energy_quantity", "must count kWh"),
    (lambda d: d.update(production_quantity="running"), "production_quantity", "cumulative counter quantity"),
    (lambda d: d["calendar"].update(utc_offset_h=25), "calendar.utc_offset_h", "less than or equal to 14"),
    (lambda d: d["tariffs"]["bands"][0].update(windows=[]), "tariffs.bands.0", "applies at no time"),
    (lambda d: d.update(media={"gas_volume": {"kwh_per_unit": 10.5}}), "media.gas_volume.source", "missing"),
])
def test_each_problem_is_one_line_naming_file_key_and_reason(tmp_path: Path, change: Any, key: str, reason: str) -> None:
    d = _steel()
    change(d)
    f = tmp_path / "plant.json"
    f.write_text(json.dumps(d))
    with pytest.raises(ConfigError) as exc:
        PlantModel.load(f)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{f}: {key}: "), msg
    assert reason in msg, msg


def test_config_check_lists_every_problem_of_a_plant_file_in_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _steel()
    d["sitee"] = "x"
    d["processes"]["eaf"]["production_unit"] = "tonnes"
    d["processes"]["caster"]["meters"] = ["caster meter"]
    d["calendar"]["utc_offset_h"] = "one"
    f = tmp_path / "plant.json"
    f.write_text(json.dumps(d))
    assert cli.main(["config", "check", str(f)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[-1] == f"{f}: 4 problem(s) in this plant file", err
    for k in ("sitee: unknown key", "processes.eaf.production_unit:", "processes.caster.meters.0:", "calendar.utc_offset_h:"):
        assert any(ln.strip().startswith(f"{f}: {k}") for ln in lines[:-1]), (k, err)
    assert "Traceback" not in err
    # Broken JSON is one line with where it broke; a good file is OK.
    f.write_text('{"site": "s",\n "processes": }')
    assert cli.main(["config", "check", str(f)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "line 2 column 15" in err, err
    f.write_text(json.dumps(_steel()))
    assert cli.main(["config", "check", str(f)]) == 0
    assert "OK — plant model steel-a: 3 processes, 3 energy meters, 2 production counters, 1 flow meters" in capsys.readouterr().out


def test_analytics_commands_refuse_a_bad_plant_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _steel()
    d["output_process"] = "TODO"
    f = tmp_path / "plant.json"
    f.write_text(json.dumps(d))
    for argv in (["analyze", "sec", "--plant", str(f), "--start", "2026-01-05", "--end", "2026-01-06", "--influx-url", "http://127.0.0.1:9"],
                 ["analyze", "enpi", "--plant", str(f), "--start", "2026-01-05", "--end", "2026-01-08", "--baseline-until", "2026-01-07",
                  "--influx-url", "http://127.0.0.1:9"],
                 ["report", "--plant", str(f), "--from", "2026-01-05", "--to", "2026-01-06", "--out", str(tmp_path / "r"),
                  "--influx-url", "http://127.0.0.1:9"]):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and f"{f}: output_process: 'TODO' left in the file" in err, err


def test_write_schema_command(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "carbonedge.plant"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout) == plant_mod.json_schema()


def test_a_plant_models_media_factors_reach_the_conversion() -> None:
    from carbonedge.analytics.media import factors

    m = PlantModel.from_dict({**_steel(), "media": {"gas_volume": {"kwh_per_unit": 9.77, "source": "supplier certificate 2026-02"},
                                                    "water_volume": {"kwh_per_unit": None, "source": "not an energy carrier"}}})
    f = factors(m.media)
    assert f["gas_volume"].to_kwh(100) == pytest.approx(977) and f["gas_volume"].source == "supplier certificate 2026-02"
    assert f["gas_volume"].basis == factors()["gas_volume"].basis  # not given: the default's
    assert f["water_volume"].kwh_per_unit is None
