"""PACT v3.0 host and importer against real `carbonedge pact serve` processes (uvicorn, TLS, loopback ports).

The official conformance service's cases run in bench/pact_conformance.py (docs/pact.md); here:
the footprint's content (schema, declared unit, primary data share and DQIs from metering
coverage, integrity evidence), every bad request and its error code with nothing else changing,
TLS-only serving, v2.3 import, and two plants exchanging a footprint and its update.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from carbonedge.analytics.carbon import from_csv_dir, load_settings
from carbonedge.analytics.pact import errors
from carbonedge.analytics.pact.importer import current_by_product
from carbonedge.analytics.pact.model import load_pact_settings
from carbonedge.analytics.pact.publish import compute_footprints, publish
from carbonedge.analytics.pact.store import Store
from carbonedge.analytics.pact.tls import make_dev_certs
from carbon_synth import make_plant
from carbonedge.app.services import free_port

CE = str(Path(sys.executable).with_name("carbonedge"))
STEEL_CARBON = """
[carbon]
country = "DE"
residual_factor = "{residual}"
process_emissions = {{ eaf = "ipcc2006.process.eaf" }}
[[products]]
name = "hot-rolled coil"
unit = "t"
cn_code = "7208 51 20"
periods = [["2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z"]]
[[products]]
name = "S355 slab"
unit = "t"
cn_code = "7207 19 80"
periods = [["2026-01-06T00:00:00Z", "2026-01-07T00:00:00Z"]]
"""
STEEL_PACT = """
company_name = "Ruhr Steel AG"
company_ids = ["urn:uuid:1b0c1a3e-3f7e-4a57-9d5c-0a1c9f1e2d3b"]
meter_accuracy_class = "0.5S"
[[products]]
name = "hot-rolled coil"
product_ids = ["urn:gtin:4012345000016"]
classifications = ["urn:pact:productclassification:cn:72085120"]
[[products]]
name = "S355 slab"
product_ids = ["urn:gtin:4012345000023"]
"""
BATTERY_CARBON = """
[carbon]
country = "DE"
[battery]
model = "LFP module 280 Ah"
manufacturer = "Cellworks GmbH"
service_life_kwh_per_kwh_capacity = 2000
[[products]]
name = "LFP module"
unit = "kWh"
[[products.materials]]
name = "steel coil"
amount_per_unit = 2.0
unit = "kg"
kg_co2e_per_amount = 2.3
source = "generic steel coil factor (secondary)"
"""
BATTERY_PACT = """
company_name = "Cellworks GmbH"
[[products]]
name = "LFP module"
product_ids = ["urn:gtin:4098765000019"]
mass_kg_per_unit = 6.5
[[purchased]]
material = "steel coil"
product_id = "urn:gtin:4012345000016"
"""


def wait_for(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Host:
    """A `carbonedge pact serve` process over TLS on a free loopback port."""

    def __init__(self, db: Path, certs: dict[str, Path], *extra: str) -> None:
        self.db, self.certs = db, certs
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log = open(db.with_suffix(".log"), "w")
        self.proc = subprocess.Popen([CE, "pact", "serve", "--db", str(db), "--port", str(self.port), "--cert", str(certs["cert"]),
                                      "--key", str(certs["key"]), *extra], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._up, 30, f"the PACT host on port {self.port}")

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.db.with_suffix(".log").read_text()
        try:
            requests.post(self.url + "/auth/token", verify=str(self.certs["ca"]), timeout=2)
            return True
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def token(self, cid: str, secret: str, **form: str) -> requests.Response:
        return requests.post(self.url + "/auth/token", data={"grant_type": "client_credentials", **form}, auth=(cid, secret),
                             verify=str(self.certs["ca"]), timeout=10)

    def get(self, path: str, tok: str | None, **kw: Any) -> requests.Response:
        h = {"Authorization": f"Bearer {tok}"} if tok else {}
        return requests.get(self.url + path, headers=h, verify=str(self.certs["ca"]), timeout=10, **kw)

    def post(self, path: str, tok: str | None, body: bytes, ctype: str = "application/cloudevents+json") -> requests.Response:
        h = {"Content-Type": ctype, **({"Authorization": f"Bearer {tok}"} if tok else {})}
        return requests.post(self.url + path, data=body, headers=h, verify=str(self.certs["ca"]), timeout=10)


def _steel_plant(root: Path, residual: str = "cn.grid.excl-market-nonfossil.2023") -> tuple[Path, Path, Path]:
    d = root / "steel"
    if not d.exists():
        make_plant(d, days=2, seed=3)
    (root / "steel-carbon.toml").write_text(STEEL_CARBON.format(residual=residual))
    (root / "steel-pact.toml").write_text(STEEL_PACT)
    return d, root / "steel-carbon.toml", root / "steel-pact.toml"


def _publish(store: Store, plant: Path, carbon: Path, pact: Path, **kw: Any) -> list[dict[str, Any]]:
    comp = compute_footprints(from_csv_dir(plant), load_settings(carbon), load_pact_settings(pact), store, **kw)
    return publish(store, comp, notify=False)


@pytest.fixture(scope="module")
def steel_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("pact-steel")
    plant, carbon, pact = _steel_plant(root)
    store = Store(root / "pact.sqlite")
    _publish(store, plant, carbon, pact)
    full = store.add_client("customer-a")
    listonly = store.add_client("auditor", scopes=("footprint:list",))
    certs = make_dev_certs(root / "certs", ["127.0.0.1"])
    host = Host(root / "pact.sqlite", certs, "--max-body", "4096")
    try:
        yield {"host": host, "store": store, "root": root, "secret": full, "list_secret": listonly}
    finally:
        host.stop()
        store.close()


def _tok(h: dict[str, Any]) -> str:
    r = h["host"].token("customer-a", h["secret"])
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


# ----------------------------------------------------------------------------- the footprint
def test_published_footprint_is_valid_v3_with_declared_unit_quality_and_period(steel_host: dict[str, Any]) -> None:
    docs = steel_host["store"].footprints()
    assert len(docs) == 2
    coil = next(d for d in docs if d["productNameCompany"] == "hot-rolled coil")
    assert errors(coil) == []
    c = coil["pcf"]
    assert (c["declaredUnitOfMeasurement"], c["declaredUnitAmount"], c["productMassPerDeclaredUnit"]) == ("kilogram", "1", "1")
    assert (c["referencePeriodStart"], c["referencePeriodEnd"]) == ("2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z")
    # The figure is report's figure (market-based scope 2 by default) per kg instead of per t.
    comp = compute_footprints(from_csv_dir(steel_host["root"] / "steel"), load_settings(steel_host["root"] / "steel-carbon.toml"),
                              load_pact_settings(steel_host["root"] / "steel-pact.toml"), steel_host["store"])
    fp = next(x["fp"] for x in comp if x["fp"]["product"] == "hot-rolled coil")
    assert float(c["pcfExcludingBiogenicUptake"]) == pytest.approx(fp["total_kg_co2e_per_unit_market"] / 1000, rel=1e-5)
    # Fully metered, no gaps, class 0.5S meters, no purchased materials: all primary, best ratings.
    assert c["primaryDataShare"] == "100"
    assert c["dqi"] == {"technologicalDQR": "1", "geographicalDQR": "1", "temporalDQR": "1"}
    assert all(isinstance(c[k], str) for k in ("pcfExcludingBiogenicUptake", "fossilGhgEmissions", "exemptedEmissionsPercent"))


def test_a_metering_gap_lowers_primary_share_and_temporal_rating(tmp_path: Path) -> None:
    plant, carbon, pact = _steel_plant(tmp_path)
    f = plant / "eaf-meter.csv"
    with f.open(newline="") as fh:
        rows = list(csv.reader(fh))
    # Drop three hours of the EAF meter's readings on the first day (the interpolation bridges them).
    keep = [r for i, r in enumerate(rows) if i == 0 or not ("2026-01-05T08" <= r[0] < "2026-01-05T11")]
    with f.open("w", newline="") as fh:
        csv.writer(fh).writerows(keep)
    store = Store(tmp_path / "p.sqlite")
    comp = compute_footprints(from_csv_dir(plant), load_settings(carbon), load_pact_settings(pact), store)
    coil = next(x for x in comp if x["fp"]["product"] == "hot-rolled coil")
    cov = coil["coverage"]
    assert cov.by_device["eaf-meter"] == pytest.approx(1 - 3 / 24, abs=0.002)
    assert cov.by_device["caster-meter"] == 1.0
    pcf = coil["doc"]["pcf"]
    assert 80 < float(pcf["primaryDataShare"]) < 99
    assert float(pcf["primaryDataShare"]) == pytest.approx(100 * cov.fraction, abs=0.01)
    assert pcf["dqi"]["temporalDQR"] in ("2", "3")


# ----------------------------------------------------------------------------- the host
def test_auth_token_grants_and_refusals(steel_host: dict[str, Any]) -> None:
    h = steel_host["host"]
    ok = h.token("customer-a", steel_host["secret"])
    assert ok.status_code == 200 and ok.json()["token_type"] == "bearer" and ok.json()["expires_in"] == 3600
    assert set(ok.json()["scope"].split()) == {"footprint:list", "footprint:read"}
    assert ok.headers["cache-control"] == "no-store"
    bad = h.token("customer-a", "wrong-secret")
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    assert h.token("nobody", "x").status_code == 401
    r = requests.post(h.url + "/auth/token", data={"grant_type": "password"}, auth=("customer-a", steel_host["secret"]),
                      verify=str(h.certs["ca"]), timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    assert h.token("auditor", steel_host["list_secret"], scope="footprint:read").json()["error"] == "invalid_scope"
    # Secrets are stored hashed, never in the clear.
    raw = (steel_host["root"] / "pact.sqlite").read_bytes()
    assert steel_host["secret"].encode() not in raw


def test_list_filters_and_link_paging(steel_host: dict[str, Any]) -> None:
    h, tok = steel_host["host"], _tok(steel_host)
    every = h.get("/3/footprints", tok).json()["data"]
    assert len(every) == 2
    p1 = h.get("/3/footprints?limit=1", tok)
    assert p1.status_code == 200 and len(p1.json()["data"]) == 1
    link = p1.headers["link"]
    assert link.startswith(f"<{h.url}/3/footprints?") and link.endswith('>; rel="next"')
    nxt = link[1:link.index(">")]
    p2 = requests.get(nxt, headers={"Authorization": f"Bearer {tok}"}, verify=str(h.certs["ca"]), timeout=10)
    assert len(p2.json()["data"]) == 1 and "link" not in p2.headers
    assert {d["id"] for d in p1.json()["data"] + p2.json()["data"]} == {d["id"] for d in every}
    coil = next(d for d in every if d["productNameCompany"] == "hot-rolled coil")

    def ids(q: str) -> set[str]:
        r = h.get("/3/footprints?" + q, tok)
        assert r.status_code == 200, r.text
        return {d["id"] for d in r.json()["data"]}

    assert ids("productId=urn:gtin:4012345000016") == {coil["id"]}
    assert ids("productid=URN:GTIN:4012345000016&productId=urn:gtin:0") == {coil["id"]}  # names and values case-insensitive, OR
    assert ids("classification=urn:pact:productclassification:cn:72085120") == {coil["id"]}
    assert ids("geography=DE") == {d["id"] for d in every} and ids("geography=FR") == set()
    assert ids("companyId=urn:uuid:1b0c1a3e-3f7e-4a57-9d5c-0a1c9f1e2d3b&status=Active") == {d["id"] for d in every}
    assert ids("status=Deprecated") == set()
    assert ids("validOn=2026-01-06T00:00:00Z") == {coil["id"]}  # validity starts at the reference period end
    assert ids("validAfter=2026-01-06T12:00:00Z") == {d["id"] for d in every} - {coil["id"]}
    assert ids("validBefore=2029-01-06T12:00:00Z") == {coil["id"]}
    assert ids("productId=urn:gtin:4012345000016&status=Deprecated") == set()  # AND between criteria
    got = h.get(f"/3/footprints/{coil['id']}", tok)
    assert got.status_code == 200 and got.json()["data"] == coil


def _snapshot(store: Store) -> tuple[Any, ...]:
    return (json.dumps(store.footprints(), sort_keys=True), json.dumps(store.events(), sort_keys=True), store.clients(), store.purchased())


@pytest.mark.parametrize("case", [
    "unknown_filter", "bad_date", "bad_limit", "odata_filter", "no_token", "wrong_token", "expired_token", "wrong_scope",
    "unknown_id", "not_a_uuid", "malformed_json", "unknown_event", "invalid_event", "wrong_content_type", "oversize_body",
    "request_without_partner", "unknown_path"])
def test_bad_requests_get_the_specified_error_and_change_nothing(steel_host: dict[str, Any], case: str) -> None:
    h, store, tok = steel_host["host"], steel_host["store"], _tok(steel_host)
    before = _snapshot(store)
    pub = {"type": "org.wbcsd.pact.ProductFootprint.PublishedEvent.3", "specversion": "1.0", "id": "e1", "source": "https://customer.example",
           "time": "2026-01-10T00:00:00Z", "data": {"pfIds": [store.footprints()[0]["id"]]}}
    if case == "expired_token":
        expired = store.issue_token("customer-a", ("footprint:list", "footprint:read"), ttl_s=-1)
    listonly = h.token("auditor", steel_host["list_secret"]).json()["access_token"]
    want: dict[str, tuple[int, str]] = {
        "unknown_filter": (400, "BadRequest"), "bad_date": (400, "BadRequest"), "bad_limit": (400, "BadRequest"),
        "odata_filter": (400, "BadRequest"), "no_token": (401, "BadRequest"), "wrong_token": (401, "BadRequest"),
        "expired_token": (401, "TokenExpired"), "wrong_scope": (403, "AccessDenied"), "unknown_id": (404, "NotFound"),
        "not_a_uuid": (400, "BadRequest"), "malformed_json": (400, "BadRequest"), "unknown_event": (400, "BadRequest"),
        "invalid_event": (400, "BadRequest"), "wrong_content_type": (400, "BadRequest"), "oversize_body": (413, "BadRequest"),
        "request_without_partner": (400, "BadRequest"), "unknown_path": (404, "NotFound")}
    r = {
        "unknown_filter": lambda: h.get("/3/footprints?colour=blue", tok),
        "bad_date": lambda: h.get("/3/footprints?validOn=yesterday", tok),
        "bad_limit": lambda: h.get("/3/footprints?limit=-3", tok),
        "odata_filter": lambda: h.get("/3/footprints?$filter=created ge '2023-01-15T10:15:30Z'", tok),
        "no_token": lambda: h.get("/3/footprints", None),
        "wrong_token": lambda: h.get("/3/footprints", "not-a-token"),
        "expired_token": lambda: h.get("/3/footprints", expired),
        "wrong_scope": lambda: h.get(f"/3/footprints/{store.footprints()[0]['id']}", listonly),
        "unknown_id": lambda: h.get("/3/footprints/00000000-0000-0000-0000-000000000000", tok),
        "not_a_uuid": lambda: h.get("/3/footprints/urn:gtin:1", tok),
        "malformed_json": lambda: h.post("/3/events", tok, b'{"type": "org.wbcsd.pact.ProductFootprint.PublishedEvent.3",'),
        "unknown_event": lambda: h.post("/3/events", tok, json.dumps({**pub, "type": "org.example.Other"}).encode()),
        "invalid_event": lambda: h.post("/3/events", tok, json.dumps({**pub, "data": {"pfIds": ["urn:gtin:4712345060507"]}}).encode()),
        "wrong_content_type": lambda: h.post("/3/events", tok, json.dumps(pub).encode(), "text/plain"),
        "oversize_body": lambda: h.post("/3/events", tok, json.dumps({**pub, "data": {"pfIds": pub["data"]["pfIds"], "pad": "x" * 5000}}).encode()),
        "request_without_partner": lambda: h.post("/3/events", tok, json.dumps({**pub, "type": "org.wbcsd.pact.ProductFootprint.RequestCreatedEvent.3",
                                                                                 "data": {"productId": ["urn:gtin:4012345000016"]}}).encode()),
        "unknown_path": lambda: h.get("/3/footprint", tok),
    }[case]()
    assert (r.status_code, r.json()["code"]) == want[case], r.text
    assert isinstance(r.json()["message"], str) and r.json()["message"]
    if case == "expired_token":
        store._q("DELETE FROM tokens WHERE expires < ?", (time.time(),))
    assert _snapshot(store) == before


def test_plain_http_is_refused(steel_host: dict[str, Any], tmp_path: Path) -> None:
    h = steel_host["host"]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{h.port}/3/footprints", timeout=5)
    r = subprocess.run([CE, "pact", "serve", "--db", str(tmp_path / "x.sqlite"), "--host", "0.0.0.0", "--port", str(free_port()),
                        "--insecure-http"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "HTTPS" in r.stderr and "Traceback" not in r.stderr


def test_client_add_cli_prints_a_secret_once_and_stores_its_hash(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    r = subprocess.run([CE, "pact", "client", "add", "acme-cells", "--db", str(db), "--label", "ACME Cells"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip().split()[-1]
    st = Store(db)
    assert st.authenticate("acme-cells", secret) == ("footprint:list", "footprint:read")
    assert st.authenticate("acme-cells", secret + "x") is None
    assert secret.encode() not in db.read_bytes()
    again = subprocess.run([CE, "pact", "client", "add", "acme-cells", "--db", str(db)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr


# ----------------------------------------------------------------------------- two plants
def test_two_plants_coil_footprint_travels_and_its_update_follows(tmp_path: Path) -> None:
    certs = make_dev_certs(tmp_path / "certs", ["127.0.0.1"])
    # Steel plant: publishes its coil footprint.
    sroot = tmp_path / "steel-plant"
    sroot.mkdir()
    plant, carbon, pact = _steel_plant(sroot)
    steel = Store(sroot / "pact.sqlite")
    _publish(steel, plant, carbon, pact)
    coil_v1 = next(d for d in steel.footprints() if d["productNameCompany"] == "hot-rolled coil")
    s_secret = steel.add_client("cellworks", label="Cellworks GmbH")
    # Battery plant: its own data and host; the steel mill may post events to it.
    broot = tmp_path / "battery-plant"
    make_plant(broot / "data", days=2, seed=5)
    pj = json.loads((broot / "data" / "plant.json").read_text())
    pj.update(site="cellworks", plant="battery")
    (broot / "data" / "plant.json").write_text(json.dumps(pj))
    (broot / "carbon.toml").write_text(BATTERY_CARBON)
    (broot / "pact.toml").write_text(BATTERY_PACT)
    battery = Store(broot / "pact.sqlite")
    b_secret = battery.add_client("ruhr-steel")
    shost, bhost = Host(sroot / "pact.sqlite", certs), Host(broot / "pact.sqlite", certs)
    try:
        env = {**os.environ, "CARBONEDGE_PACT_SECRET": b_secret}
        r = subprocess.run([CE, "pact", "partner", "add", bhost.url, "--client-id", "ruhr-steel", "--ca-file", str(certs["ca"]),
                            "--db", str(sroot / "pact.sqlite")], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        # Before any supplier data: the generic factor.
        bset, bpact = load_settings(broot / "carbon.toml"), load_pact_settings(broot / "pact.toml")
        data = from_csv_dir(broot / "data")
        before = compute_footprints(data, bset, bpact, battery)[0]
        assert before["fp"]["materials"][0]["kg_co2e_per_amount"] == 2.3
        # The battery plant pulls the steel mill's footprints.
        env = {**os.environ, "CARBONEDGE_PACT_SECRET": s_secret}
        r = subprocess.run([CE, "pact", "fetch", shost.url, "--client-id", "cellworks", "--ca-file", str(certs["ca"]), "--db",
                            str(broot / "pact.sqlite")], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "2 footprint(s) listed (PACT 3.0), 2 valid and stored" in r.stdout
        after = compute_footprints(data, bset, bpact, battery)[0]
        m = after["fp"]["materials"][0]
        coil_kg = float(coil_v1["pcf"]["pcfExcludingBiogenicUptake"])
        assert m["kg_co2e_per_amount"] == pytest.approx(coil_kg) and m["supplier"]["pf_id"] == coil_v1["id"]
        assert after["fp"]["stages_kg_co2e_per_unit"]["upstream_materials"] == pytest.approx(2.0 * coil_kg)
        # The supplier's primary data replaces a secondary factor: the primary share rises.
        assert float(after["doc"]["pcf"]["primaryDataShare"]) > float(before["doc"]["pcf"]["primaryDataShare"])
        assert float(after["doc"]["pcf"]["pcfExcludingBiogenicUptake"]) != float(before["doc"]["pcf"]["pcfExcludingBiogenicUptake"])
        assert errors(after["doc"]) == []
        # `carbonedge report` uses the supplier's figure in place of the generic factor and names it.
        r = subprocess.run([CE, "report", "--csv", str(broot / "data"), "--carbon", str(broot / "carbon.toml"), "--pact", str(broot / "pact.toml"),
                            "--pact-db", str(broot / "pact.sqlite"), "--out", str(broot / "report")], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"steel coil: 2.3 -> {coil_kg:.4g} kg CO2e/kg from Ruhr Steel AG (PACT {coil_v1['id']})" in r.stdout
        rep = json.loads((broot / "report" / "report.json").read_text())
        mat = rep["products"][0]["materials"][0]
        assert mat["kg_co2e_per_amount"] == pytest.approx(coil_kg) and mat["source"].startswith(f"PACT footprint {coil_v1['id']} of Ruhr Steel AG")
        assert rep["products"][0]["total_kg_co2e_per_unit_market"] == pytest.approx(after["fp"]["total_kg_co2e_per_unit_market"])
        # The steel mill recalculates (another residual-mix factor): a new footprint, the old one Deprecated, a PublishedEvent.
        _steel_plant(sroot, "cn.grid.national-average.2023")
        r = subprocess.run([CE, "pact", "publish", "--csv", str(plant), "--carbon", str(carbon), "--pact", str(pact), "--db",
                            str(sroot / "pact.sqlite")], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"deprecated {coil_v1['id']}" in r.stdout and f"PublishedEvent sent to {bhost.url}" in r.stdout
        coil_v2 = next(d for d in steel.footprints() if d["productNameCompany"] == "hot-rolled coil" and d["status"] == "Active")
        assert coil_v2["precedingPfIds"] == [coil_v1["id"]]
        assert coil_v2["pcf"]["pcfExcludingBiogenicUptake"] != coil_v1["pcf"]["pcfExcludingBiogenicUptake"]
        # The battery plant's host fetches the update on its own.
        wait_for(lambda: current_by_product(battery).get("urn:gtin:4012345000016", {}).get("pf_id") == coil_v2["id"], 30,
                 "the battery plant to fetch the recalculated coil footprint")
        later = compute_footprints(data, bset, bpact, battery)[0]
        assert later["fp"]["materials"][0]["kg_co2e_per_amount"] == pytest.approx(float(coil_v2["pcf"]["pcfExcludingBiogenicUptake"]))
        assert {e["type"].rsplit(".", 2)[-2] for e in battery.events() if e["direction"] == "in"} == {"PublishedEvent"}
    finally:
        shost.stop()
        bhost.stop()


# ----------------------------------------------------------------------------- integrity evidence
def _signed_archive(root: Path, site: str, start: str, hours: int) -> tuple[Path, Path]:
    """A collector archive of hourly signed batches of one gateway, and the trust file with its key."""
    from carbonedge import wire
    from carbonedge.clock import parse_time
    from carbonedge.integrity import Archive, BatchSigner, TrustStore, generate_key

    key = generate_key(root / "gw1.key")
    signer = BatchSigner(key, site, "gw1", root / "chain.json")
    signer.resume(0)
    arch = Archive(root / "archive", "collector-1")
    t0 = int(parse_time(start) * 1000)
    for i in range(1, hours + 1):
        ts = t0 + (i - 1) * 3_600_000 + 60_000
        b = wire.Batch(site=site, gateway="gw1", boot_id="0a1b2c3d", seq=i, created=ts, devices=[
            wire.DeviceReadings(device="eaf-meter", ts=ts, values={"active_energy_import": wire.Value(v=1000.0 * i, u="kWh")})])
        sb = signer.sign(b)
        signer.committed(i)
        arch.append([(site, "gw1", i, sb.to_json())])
    arch.close()
    trust = TrustStore()
    trust.add(site, "gw1", key.public_key())
    trust.save(root / "trust.json")
    return root / "archive", root / "trust.json"


def test_integrity_evidence_travels_and_a_forged_one_is_caught(tmp_path: Path) -> None:
    from carbonedge.analytics.pact.evidence import verify_evidence
    from carbonedge.analytics.pact.schema import PactError
    from carbonedge.integrity import TrustStore

    plant, carbon, pact = _steel_plant(tmp_path)
    archive, trust_path = _signed_archive(tmp_path, "synth-steel", "2026-01-05T00:00:00Z", 48)
    trust = TrustStore.load(trust_path)
    store = Store(tmp_path / "p.sqlite")
    comp = compute_footprints(from_csv_dir(plant), load_settings(carbon), load_pact_settings(pact), store, archive=archive, trust=trust)
    coil = next(c["doc"] for c in comp if c["doc"]["productNameCompany"] == "hot-rolled coil")
    assert errors(coil) == []
    ext = coil["extensions"][0]
    assert ext["dataSchema"] == "urn:carbonedge:pact-extension:integrity-evidence:1.0.0"
    chain = ext["data"]["chains"][0]
    assert (chain["gateway"], chain["firstSeq"], chain["lastSeq"], chain["batches"]) == ("gw1", 1, 24, 24)  # the coil's day only
    assert verify_evidence(ext["data"], trust) == ["synth-steel/gw1: seq 1-24 (24 batches), head signature valid, key registered in the trust file"]
    forged = json.loads(json.dumps(ext["data"]))
    forged["chains"][0]["head"]["hash"] = "0" * 64
    with pytest.raises(PactError, match="signature does not verify"):
        verify_evidence(forged)
    # An archive with a hole in the period is refused: a figure is right or not published.
    lines = (archive / "synth-steel" / "gw1.jsonl").read_text().splitlines()
    (archive / "synth-steel" / "gw1.jsonl").write_text("\n".join(lines[:5] + lines[6:]) + "\n")
    with pytest.raises(PactError, match="integrity finding"):
        compute_footprints(from_csv_dir(plant), load_settings(carbon), load_pact_settings(pact), store, archive=archive, trust=trust)


# ----------------------------------------------------------------------------- v2.3 suppliers
V23 = {
    "id": "3a6c14a7-4deb-498a-b5ea-16ce2535b576", "specVersion": "2.3.0", "version": 1, "created": "2025-11-03T08:00:00Z",
    "status": "Active", "comment": "", "companyName": "Old Coil Works", "companyIds": ["urn:uuid:52c2b0a4-6d32-4e19-b2f3-0c9c2b0b8a11"],
    "productDescription": "hot-rolled coil", "productIds": ["urn:gtin:4012345000016"], "productCategoryCpc": "41231",
    "productNameCompany": "HRC",
    "pcf": {"declaredUnit": "kilogram", "unitaryProductAmount": "1000", "referencePeriodStart": "2025-01-01T00:00:00Z",
            "referencePeriodEnd": "2025-12-31T23:59:59Z", "pCfExcludingBiogenic": "1.85", "fossilGhgEmissions": "1.85",
            "fossilCarbonContent": "0", "biogenicCarbonContent": "0", "characterizationFactors": "AR6",
            "ipccCharacterizationFactorsSources": ["AR6"], "crossSectoralStandardsUsed": ["GHG Protocol Product standard"],
            "boundaryProcessesDescription": "cradle-to-gate", "exemptedEmissionsPercent": 0, "exemptedEmissionsDescription": "",
            "packagingEmissionsIncluded": False, "primaryDataShare": 56.0, "geographyCountry": "DE"},
}


def _v23_host(certs: dict[str, Path], docs: list[dict[str, Any]]) -> tuple[Any, threading.Thread, str]:
    """A minimal PACT v2.3 host (a supplier not yet migrated) on uvicorn with TLS, in a thread."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def token(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != "Basic " + base64.b64encode(b"cellworks:s3cret").decode():
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        return JSONResponse({"access_token": "v2-token", "token_type": "bearer", "expires_in": 3600})

    async def footprints(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != "Bearer v2-token":
            return JSONResponse({"code": "AccessDenied", "message": "no"}, status_code=403)
        return JSONResponse({"data": docs})

    app = Starlette(routes=[Route("/auth/token", token, methods=["POST"]), Route("/2/footprints", footprints)])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, ssl_certfile=str(certs["cert"]),
                                           ssl_keyfile=str(certs["key"]), log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    wait_for(lambda: server.started, 15, "the v2.3 host")
    return server, t, f"https://127.0.0.1:{port}"


def test_fetch_from_a_v23_supplier_validates_and_converts(tmp_path: Path) -> None:
    from carbonedge.analytics.pact.importer import fetch

    certs = make_dev_certs(tmp_path / "certs", ["127.0.0.1"])
    broken = json.loads(json.dumps(V23))
    broken["id"], broken["pcf"]["pCfExcludingBiogenic"] = "9b2a2f7c-3d5e-4b7a-8c1d-2e3f4a5b6c7d", 1.9  # a number, not a decimal string
    server, t, url = _v23_host(certs, [V23, broken])
    try:
        store = Store(tmp_path / "b.sqlite")
        res = fetch(store, url, "cellworks", "s3cret", version="2.3", ca_file=str(certs["ca"]))
        assert res["listed"] == 2 and res["new"] == 1
        assert res["invalid"][0][0] == broken["id"] and "pcf/pCfExcludingBiogenic" in res["invalid"][0][1]
        s = current_by_product(store)["urn:gtin:4012345000016"]
        # v2.3: pCfExcludingBiogenic is per declared unit (1 kg), whatever unitaryProductAmount says.
        assert (s["kg_co2e_per_unit"], s["unit"], s["primary_data_share"], s["spec_version"]) == (1.85, "kg", 56.0, "2.3.0")
        with pytest.raises(Exception, match="refused"):
            fetch(store, url, "cellworks", "wrong", version="2.3", ca_file=str(certs["ca"]))
    finally:
        server.should_exit = True
        t.join(10)


# ----------------------------------------------------------------------------- the official conformance service
@pytest.mark.slow
def test_official_conformance_service_passes_every_mandatory_v3_case() -> None:
    import shutil

    repo = Path(__file__).resolve().parents[1]
    svc = Path(os.environ.get("PACT_CONFORMANCE_SERVICE") or repo.parent / "shared" / "tools" / "pact-conformance-service")
    if not (svc / "src" / "test-cases" / "v3-test-cases.ts").is_file() or shutil.which("npm") is None:
        pytest.skip("the PACT conformance service source or Node.js/npm is not available (see docs/pact.md)")
    r = subprocess.run([sys.executable, str(repo / "bench" / "pact_conformance.py"), "--service", str(svc)], capture_output=True,
                       text=True, timeout=900)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0 and last == "passed=39 failed=0 skipped=0", r.stdout[-3000:] + r.stderr[-2000:]


def test_publish_reports_an_unreachable_partner_and_keeps_the_footprint(tmp_path: Path) -> None:
    plant, carbon, pact = _steel_plant(tmp_path)
    db = tmp_path / "s.sqlite"
    st = Store(db)
    down = f"https://127.0.0.1:{free_port()}"
    st.add_partner(down, "meltshop", "secret", notify=True)
    r = subprocess.run([CE, "pact", "publish", "--csv", str(plant), "--carbon", str(carbon), "--pact", str(pact), "--db", str(db)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "public URL is unknown" in r.stderr and st.footprints() == []
    r = subprocess.run([CE, "pact", "publish", "--csv", str(plant), "--carbon", str(carbon), "--pact", str(pact), "--db", str(db),
                        "--public-url", "https://pact.meltshop.example"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and f"PublishedEvent NOT delivered to {down}" in r.stderr and "Traceback" not in r.stderr
    assert len(st.footprints()) == 2
    ev = st.events()
    assert [(e["direction"], e["peer"], e["state"]) for e in ev] == [("out", down, "failed")]
    assert {*json.loads(ev[0]["body"])["data"]["pfIds"]} == {d["id"] for d in st.footprints()}
