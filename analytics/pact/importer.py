"""``carbonedge pact fetch``: suppliers' footprints (PACT v3.0 or v2.3) as purchased-input factors, with provenance.

Every fetched footprint is validated against its version's schema (an invalid one is reported
and not used), its integrity evidence is checked when it carries carbonedge's extension, and it
is stored with where and when it came from. :func:`apply_purchased` then puts a supplier's
figure in place of the generic secondary factor of the material it stands for (``[[purchased]]``
in the PACT settings), so the product footprint's materials stage and its primary data share
change accordingly.
"""

from __future__ import annotations

import copy
from typing import Any

from carbonedge.analytics.pact.client import PactClient
from carbonedge.analytics.pact.evidence import verify_evidence
from carbonedge.analytics.pact.model import EVIDENCE_SCHEMA, PactSettings, summarize
from carbonedge.analytics.pact.schema import PactError, errors
from carbonedge.analytics.pact.store import Store
from carbonedge.errors import ConfigError

#: Material unit -> (supplier declared unit, supplier units per material unit).
_CONVERT = {("kg", "kg"): 1.0, ("t", "kg"): 1000.0, ("kWh", "kWh"): 1.0, ("MWh", "kWh"): 1000.0, ("pcs", "pcs"): 1.0,
            ("m3", "m3"): 1.0, ("l", "l"): 1.0, ("MJ", "MJ"): 1.0, ("GJ", "MJ"): 1000.0}


def record_footprints(store: Store, sup: dict[str, Any], docs: list[dict[str, Any]], version: str) -> dict[str, Any]:
    """Validate and store supplier footprints; returns {"stored": [...summaries], "new": n, "invalid": [(id, reason)]}."""
    stored, invalid, new = [], [], 0
    for doc in docs:
        errs = errors(doc, "ProductFootprint", version)
        pf_id = doc.get("id", "?") if isinstance(doc, dict) else "?"
        if errs:
            invalid.append((pf_id, "; ".join(errs[:3])))
            continue
        s = summarize(doc, version)
        s["host"] = sup["base_url"]
        s["integrity"] = None
        for ext in doc.get("extensions") or []:
            if ext.get("dataSchema") == EVIDENCE_SCHEMA:
                try:
                    s["integrity"] = {"ok": True, "chains": verify_evidence(ext["data"])}
                except PactError as exc:
                    s["integrity"] = {"ok": False, "error": str(exc)}
        new += store.record_purchased(sup["base_url"], s, doc)
        stored.append(s)
    return {"stored": stored, "new": new, "invalid": invalid}


def _client(sup: dict[str, Any]) -> PactClient:
    return PactClient(sup["base_url"], sup["client_id"], sup["client_secret"], version=sup["version"], ca_file=sup["ca_file"])


def fetch(store: Store, base_url: str, client_id: str, client_secret: str, *, version: str = "3.0", ca_file: str | None = None,
          filters: dict[str, Any] | None = None) -> dict[str, Any]:
    """List a supplier's footprints (all pages), validate and store them; the supplier's credentials are kept for updates."""
    client = PactClient(base_url, client_id, client_secret, version=version, ca_file=ca_file)
    docs = list(client.list(filters))
    sup = {"base_url": client.base, "client_id": client_id, "client_secret": client_secret, "ca_file": ca_file, "version": version}
    store.add_supplier(client.base, client_id, client_secret, ca_file=ca_file, version=version)
    res = record_footprints(store, sup, docs, version)
    res["listed"] = len(docs)
    return res


def refresh_published(store: Store, sup: dict[str, Any], pf_ids: list[str]) -> None:
    """Fetch footprints a supplier announced in a PublishedEvent (GetFootprint each), validate and store them."""
    client = _client(sup)
    docs = [client.get(i) for i in pf_ids]
    res = record_footprints(store, sup, docs, sup["version"])
    if res["invalid"]:
        raise PactError(f"{sup['base_url']} published invalid footprint(s): " + "; ".join(f"{i}: {r}" for i, r in res["invalid"]))


def current_by_product(store: Store) -> dict[str, dict[str, Any]]:
    """The newest current (not superseded, Active) supplier footprint per productId (lower case)."""
    out: dict[str, dict[str, Any]] = {}
    for s in store.purchased(current_only=True):
        if s["status"] != "Active":
            continue
        for pid in s["product_ids"]:
            out.setdefault(pid.lower(), s)
    return out


def apply_purchased(fps: list[dict[str, Any]], pact: PactSettings, purchased: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Product footprints with supplier PACT figures in place of the declared factors of the mapped materials."""
    by_material = {p.material: p.product_id.lower() for p in pact.purchased}
    out = []
    for fp in fps:
        fp = copy.deepcopy(fp)
        for m in fp["materials"]:
            pid = by_material.get(m["name"])
            if pid is None:
                continue
            s = purchased.get(pid)
            if s is None:
                m["supplier_note"] = f"no current supplier footprint for {pid} (run `carbonedge pact fetch`); declared factor used"
                continue
            conv = _CONVERT.get((m["unit"], s["unit"]))
            if conv is None:
                raise ConfigError(f"material {m['name']!r} is counted in {m['unit']!r} but its supplier's footprint {s['pf_id']} is per "
                                  f"{s['unit']!r}; they cannot be converted, so the supplier figure cannot be used")
            m["declared_kg_co2e_per_amount"] = m["kg_co2e_per_amount"]
            m["kg_co2e_per_amount"] = s["kg_co2e_per_unit"] * conv
            m["kg_co2e_per_unit"] = m["amount_per_unit"] * m["kg_co2e_per_amount"]
            m["source"] = f"PACT footprint {s['pf_id']} of {s['company']} (spec {s['spec_version']}, {s['host']})"
            m["supplier"] = {"pf_id": s["pf_id"], "company": s["company"], "host": s["host"], "spec_version": s["spec_version"],
                             "primary_data_share": s["primary_data_share"], "dqi": s["dqi"], "fetched": s["fetched"],
                             "integrity": s.get("integrity")}
        up = sum(m["kg_co2e_per_unit"] for m in fp["materials"])
        st = fp["stages_kg_co2e_per_unit"]
        st["upstream_materials"] = up
        fp["total_kg_co2e_per_unit_location"] = up + st["manufacturing_scope1"] + st["manufacturing_scope2_location"]
        fp["total_kg_co2e_per_unit_market"] = up + st["manufacturing_scope1"] + st["manufacturing_scope2_market"]
        out.append(fp)
    return out


def settings_with_purchased(settings: Any, pact: PactSettings, purchased: dict[str, dict[str, Any]]) -> tuple[Any, list[str]]:
    """Carbon settings whose mapped materials carry their suppliers' PACT figures (for ``carbonedge report --pact-db``).

    Returns the new settings and one line per substitution (or per mapped material left on its declared factor).
    """
    by_material = {p.material: p.product_id.lower() for p in pact.purchased}
    notes: list[str] = []
    products = []
    for prod in settings.products:
        mats = []
        for m in prod.materials:
            pid = by_material.get(m.name)
            s = purchased.get(pid) if pid else None
            if pid and s is None:
                notes.append(f"{prod.name} / {m.name}: no current supplier footprint for {pid}; declared factor {m.kg_co2e_per_amount} "
                             f"kg CO2e/{m.unit} ({m.source}) used")
            if s is None:
                mats.append(m)
                continue
            conv = _CONVERT.get((m.unit, s["unit"]))
            if conv is None:
                raise ConfigError(f"material {m.name!r} is counted in {m.unit!r} but its supplier's footprint {s['pf_id']} is per {s['unit']!r}")
            k = s["kg_co2e_per_unit"] * conv
            src = (f"PACT footprint {s['pf_id']} of {s['company']} (spec {s['spec_version']}, primary data share "
                   f"{s['primary_data_share']:.1f} %), replacing {m.kg_co2e_per_amount:g} kg CO2e/{m.unit} from {m.source}")
            mats.append(m.model_copy(update={"kg_co2e_per_amount": k, "source": src}))
            notes.append(f"{prod.name} / {m.name}: {m.kg_co2e_per_amount:g} -> {k:.4g} kg CO2e/{m.unit} from {s['company']} (PACT {s['pf_id']})")
        products.append(prod.model_copy(update={"materials": mats}))
    return settings.model_copy(update={"products": products}), notes
