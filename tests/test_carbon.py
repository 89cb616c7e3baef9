"""Carbon accounts, the emission-factor library, product footprints and regulatory exports, by hand calculation."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import requests
from carbon_synth import make_plant

from carbonedge.analytics import InfluxReader
from carbonedge.analytics.carbon import FactorLibrary, compute_accounts, default_settings, from_csv_dir, from_influx, load_settings, write_carbon
from carbonedge.analytics.carbon.footprint import product_footprint
from carbonedge.analytics.carbon.settings import Instrument, Material, Product
from carbonedge.clock import iso, parse_time
from carbonedge.errors import ConfigError


@pytest.fixture(scope="module")
def plant_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("synth")
    truth = make_plant(d, days=2)
    return d, truth


def test_factor_library_has_provenance_for_every_factor() -> None:
    lib = FactorLibrary.load()
    assert lib.versions == ["carbonedge-ef@2026.2"]
    for f in lib.factors.values():
        assert f.publisher and f.source and f.unit and f.region and f.year > 1990, f.id
        assert f.quality in {"primary", "derived", "secondary", "unverified"}
    # Domain reference §4: MEE 2022 ETS factor and IPCC natural gas.
    assert lib.get("cn.grid.ets-reporting.2022").kg_per_kwh == pytest.approx(0.5703)
    assert lib.get("ipcc2006.fuel.natural-gas").kg_per_kwh == pytest.approx(0.20196)
    assert [f["id"] for f in lib.used_factors()] == ["cn.grid.ets-reporting.2022", "ipcc2006.fuel.natural-gas"]


def test_factor_library_errors_name_the_problem(tmp_path: Path) -> None:
    lib = FactorLibrary.load()
    with pytest.raises(ConfigError, match="unknown emission factor 'cn.grid.nope'"):
        lib.get("cn.grid.nope")
    with pytest.raises(ConfigError, match="version '1999.9' not found; available: 2026.1, 2026.2"):
        FactorLibrary.load("1999.9")
    bad = tmp_path / "site.json"
    bad.write_text(json.dumps({"library": "site", "version": "1", "factors": [{"id": "x", "kind": "electricity", "value": -1}]}))
    with pytest.raises(ConfigError, match="lacks unit, gas, region"):
        FactorLibrary.load(extra=[bad])


def test_site_factor_file_overrides_and_is_named(tmp_path: Path) -> None:
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"library": "acme-ppa", "version": "3", "factors": [
        {"id": "acme.supplier.2026", "kind": "electricity", "value": 412.0, "unit": "g CO2/kWh", "gas": "CO2", "region": "CN-East",
         "year": 2026, "publisher": "supplier disclosure", "purpose": "supplier-specific", "source": "site", "quality": "primary"}]}))
    lib = FactorLibrary.load(extra=[site])
    assert lib.versions == ["carbonedge-ef@2026.2", "acme-ppa@3"]
    assert lib.get("acme.supplier.2026").kg_per_kwh == pytest.approx(0.412)
    assert lib.get("acme.supplier.2026").library == "acme-ppa@3"


def test_process_emissions_sum_to_plant_total_and_match_hand_calculation(plant_dir: tuple[Path, dict]) -> None:
    d, truth = plant_dir
    data = from_csv_dir(d)
    s = default_settings(data.plant)
    acc = compute_accounts(data, s)
    lib = FactorLibrary.load()
    grid = lib.get("cn.grid.national-average.2023").value
    gas = lib.get("site.ncv.natural-gas").value * lib.get("ipcc2006.fuel.natural-gas").value
    eaf_pe = lib.get("ipcc2006.process.eaf").value * 1000.0
    tot = acc.plant_totals()
    # Plant total from the meters over the whole period, independent of the per-process bins: within 0.1 %.
    assert abs(acc.plant_check["difference_pct"]) < 0.1
    assert sum(p.scope2_location_kg.sum() for p in acc.processes.values()) == pytest.approx(tot["scope2_location_kg"], rel=1e-3)
    # Against the generator's truth (energy integrated independently of the CSV counters).
    true_kwh = sum(p["energy_kwh"] for p in truth["processes"].values())
    assert tot["energy_kwh"] == pytest.approx(true_kwh, rel=1e-6)
    assert tot["scope2_location_kg"] == pytest.approx(true_kwh * grid, rel=1e-6)
    true_s1 = truth["processes"]["caster"]["gas_nm3"] * gas + truth["processes"]["eaf"]["production"] * eaf_pe
    assert tot["scope1_kg"] == pytest.approx(true_s1, rel=1e-6)
    for name, p in acc.processes.items():
        assert p.energy_kwh.sum() == pytest.approx(truth["processes"][name]["energy_kwh"], rel=1e-6)
    # Per-meter figures add up to their process.
    for p in acc.processes.values():
        assert sum(m.get("energy_kwh", 0.0) for m in p.meters.values()) == pytest.approx(p.energy_kwh.sum())
    assert {f["id"] for f in acc.as_dict()["factors_used"]} >= {"cn.grid.national-average.2023", "ipcc2006.fuel.natural-gas"}


def test_market_based_scope2_applies_certificates_in_their_period(plant_dir: tuple[Path, dict]) -> None:
    d, _ = plant_dir
    data = from_csv_dir(d)
    s = default_settings(data.plant)
    # Certificates for 100 MWh on day 1 only; day 1 uses far more, so exactly 100 MWh are zero-rated.
    s.carbon.instruments = [Instrument(name="GEC lot 7", start="2026-01-05T00:00:00Z", end="2026-01-06T00:00:00Z", mwh=100.0)]
    acc = compute_accounts(data, s)
    resid = FactorLibrary.load().get(s.carbon.residual_factor).value
    tot = acc.plant_totals()
    assert tot["scope2_market_kg"] == pytest.approx((tot["energy_kwh"] - 100_000.0) * resid, rel=1e-9)
    assert acc.instruments[0]["matched_kwh"] == pytest.approx(100_000.0)
    # An instrument larger than the period's consumption covers only what was used; the rest is reported unused.
    s.carbon.instruments = [Instrument(name="PPA", kind="ppa", start="2026-01-05T00:00:00Z", end="2026-01-06T00:00:00Z", mwh=1e6)]
    acc2 = compute_accounts(data, s)
    mids = (acc2.edges[:-1] + acc2.edges[1:]) / 2
    day1 = mids < parse_time("2026-01-06T00:00:00Z")
    day1_kwh = sum(p.energy_kwh[day1].sum() for p in acc2.processes.values())
    assert acc2.instruments[0]["unused_mwh"] == pytest.approx(1e6 - day1_kwh / 1000.0)
    assert acc2.plant_totals()["scope2_market_kg"] == pytest.approx((tot["energy_kwh"] - day1_kwh) * resid, rel=1e-9)


def test_hourly_grid_factors(plant_dir: tuple[Path, dict], tmp_path: Path) -> None:
    d, _ = plant_dir
    data = from_csv_dir(d)
    s = default_settings(data.plant)
    f = tmp_path / "hourly.csv"
    hours = np.arange(parse_time("2026-01-05T00:00:00Z"), parse_time("2026-01-07T00:00:00Z"), 3600.0)
    vals = 0.3 + 0.4 * ((hours // 3600) % 2)  # 0.3 on even hours, 0.7 on odd hours
    with f.open("w") as fh:
        fh.write("ts,kg_co2_per_kwh\n" + "".join(f"{iso(float(h))},{v}\n" for h, v in zip(hours, vals)))
    s.carbon.hourly_grid_factors = str(f)
    acc = compute_accounts(data, s)
    expected = sum((p.energy_kwh * vals[: p.energy_kwh.size]).sum() for p in acc.processes.values())
    assert acc.plant_totals()["scope2_location_kg"] == pytest.approx(expected, rel=1e-9)


def test_product_footprint_reproduces_hand_calculation(plant_dir: tuple[Path, dict]) -> None:
    d, truth = plant_dir
    data = from_csv_dir(d)
    s = default_settings(data.plant)
    acc = compute_accounts(data, s)
    lib = FactorLibrary.load()
    grid = lib.get("cn.grid.national-average.2023").value
    gas = lib.get("site.ncv.natural-gas").value * lib.get("ipcc2006.fuel.natural-gas").value
    tp = truth["processes"]
    scrap = Material(name="scrap", amount_per_unit=1100.0, kg_co2e_per_amount=0.02, source="supplier PCF 2026")
    # Installation-output rule: everything / cast tonnes, plus materials.
    prod = Product(name="S235", unit="t", materials=[scrap])
    fp = product_footprint(acc, prod, data.plant)
    cast = tp["caster"]["production"]
    e_all = sum(p["energy_kwh"] for p in tp.values())
    s1_all = tp["caster"]["gas_nm3"] * gas + tp["eaf"]["production"] * 80.0
    hand = 1100 * 0.02 + (s1_all + e_all * grid) / cast
    assert fp["total_kg_co2e_per_unit_location"] == pytest.approx(hand, rel=1e-6)
    assert "installation-output" in fp["allocation_rule"] and "cradle-to-gate" in fp["boundary"]
    # Process-chain rule: EAF per EAF tonne + caster per cast tonne + compressed air per cast tonne.
    chain = Product(name="S235 chain", unit="t", route=["eaf", "caster", "compressed_air"])
    fp2 = product_footprint(acc, chain, data.plant)
    hand2 = ((tp["eaf"]["energy_kwh"] * grid + tp["eaf"]["production"] * 80.0) / tp["eaf"]["production"]
             + (tp["caster"]["energy_kwh"] * grid + tp["caster"]["gas_nm3"] * gas) / cast
             + tp["compressed_air"]["energy_kwh"] * grid / cast)
    assert fp2["total_kg_co2e_per_unit_location"] == pytest.approx(hand2, rel=1e-6)
    assert "process-chain" in fp2["allocation_rule"]
    with pytest.raises(ConfigError, match="route process 'bof' is not in the plant"):
        product_footprint(acc, Product(name="x", route=["bof"]), data.plant)


def test_settings_file_errors_are_located(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tariff.pf_threshold: Input should be less than or equal to 1"):
        load_settings(_write(tmp_path / "c.toml", "[tariff]\npf_threshold = 1.5\n"))
    with pytest.raises(ConfigError, match=r"carbon.instruments.0.mwh"):
        load_settings(_write(tmp_path / "d.toml", '[[carbon.instruments]]\nname="x"\nstart="2026-01-01T00:00:00Z"\nend="2026-02-01T00:00:00Z"\nmwh=-3\n'))


def test_influx_round_trip_and_co2_write_back(plant_dir: tuple[Path, dict], services, database: str) -> None:  # type: ignore[no-untyped-def]
    d, truth = plant_dir
    offline = from_csv_dir(d)
    # Store the export as the collector would (measurement readings, one field per quantity).
    lines = []
    for dev, ds in offline.devices.items():
        proc = offline.plant.process_of(dev)
        for i in range(ds.t.size):
            f = ",".join(f"{q}={float(v[i])!r}" for q, v in ds.values.items() if np.isfinite(v[i]))
            lines.append(f"readings,site=synth-steel,device={dev},process={proc} {f} {int(ds.t[i] * 1000)}")
    r = requests.post(f"{services.influx.url}/write", params={"db": database, "precision": "ms"}, data="\n".join(lines).encode(), timeout=60)
    assert r.status_code == 204, r.text
    reader = InfluxReader(services.influx.url, database)
    data = from_influx(reader, offline.plant, offline.start, offline.end, chunk_s=6 * 3600.0)
    s = default_settings(data.plant)
    acc = compute_accounts(data, s)
    acc_off = compute_accounts(offline, s)
    assert acc.plant_totals()["energy_kwh"] == pytest.approx(acc_off.plant_totals()["energy_kwh"], rel=1e-9)
    n = write_carbon(acc, services.influx.url, database)
    assert n > 0
    res = reader.query("SELECT sum(co2_kg) FROM carbon WHERE scope = '2' AND method = 'location' GROUP BY process")
    by_proc = {x["tags"]["process"]: x["values"][0][1] for x in res}
    for name, p in acc.processes.items():
        assert by_proc[name] == pytest.approx(p.scope2_location_kg.sum(), rel=1e-9)
    versions = reader.query("SELECT last(factor_version) FROM carbon")
    assert versions[0]["values"][0][1] == "carbonedge-ef@2026.2"
    with pytest.raises(ConfigError, match="no readings for site 'nowhere'"):
        from_influx(reader, offline.plant.with_site("nowhere"), offline.start, offline.end)


def _write(p: Path, text: str) -> Path:
    p.write_text("\n".join(line.strip() for line in text.strip().splitlines()) + "\n")
    return p


def test_tariff_bands_from_weekly_windows_in_plant_time() -> None:
    from carbonedge.analytics.carbon.settings import Band, Tariff

    t = Tariff(currency="EUR", energy_price=0.12, utc_offset_h=1.0,
               bands=[Band(name="peak", windows=["Mon-Fri 08:00-20:00"], price=0.21), Band(name="rest", windows=["24/7"], price=0.12)])
    mon = parse_time("2026-01-05T00:00:00Z")  # a Monday
    # 07:00 UTC is 08:00 plant time (peak); 19:00 UTC is 20:00 (off-peak); Saturday 10:00 is off-peak.
    got = t.prices(np.array([mon + 6.5 * 3600, mon + 7 * 3600, mon + 18.9 * 3600, mon + 19 * 3600, mon + 5 * 86400 + 9 * 3600]))
    assert list(got) == [0.12, 0.21, 0.21, 0.12, 0.12]
    with pytest.raises(ValueError, match="write it like 'Mon-Fri 08:00-20:00'"):
        Band(name="x", windows=["weekdays 8-20"], price=0.1)
