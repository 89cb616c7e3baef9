"""``carbonedge pact publish``: compute the product footprints the ``report`` path computes and publish them as PACT v3.0.

Same accounts and footprints as ``carbonedge report`` (:func:`compute_accounts`, :func:`footprints`),
with suppliers' PACT figures in place of declared material factors where they were fetched, the
metering coverage of the reference period, and (with ``--archive``) the integrity evidence. A
product whose figure did not change is not published again; a changed one is published as a new
footprint that names its predecessor (``precedingPfIds``), the predecessor becomes Deprecated, and
partners registered for notifications get a PublishedEvent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from carbonedge.analytics.carbon import compute_accounts, footprints
from carbonedge.analytics.carbon.data import PlantData
from carbonedge.analytics.carbon.settings import Settings
from carbonedge.analytics.pact.evidence import collect_evidence
from carbonedge.analytics.pact.importer import apply_purchased, current_by_product
from carbonedge.analytics.pact.model import PactSettings, build_footprint, coverage
from carbonedge.analytics.pact.server import notify_published
from carbonedge.analytics.pact.store import Store
from carbonedge.clock import parse_time
from carbonedge.integrity import TrustStore


def _same_figure(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keep = ("pcfExcludingBiogenicUptake", "referencePeriodStart", "referencePeriodEnd", "primaryDataShare", "dqi", "declaredUnitOfMeasurement")
    return all(a["pcf"].get(k) == b["pcf"].get(k) for k in keep) and a.get("extensions") == b.get("extensions")


def compute_footprints(data: PlantData, settings: Settings, pact: PactSettings, store: Store, *, archive: Path | None = None,
                       trust: TrustStore | None = None) -> list[dict[str, Any]]:
    """One entry per product: ``fp`` (carbonedge's footprint, with supplier figures applied), ``declared`` (without) and ``doc`` (PACT)."""
    acc = compute_accounts(data, settings)
    declared = footprints(acc, settings, data.plant)
    fps = apply_purchased(declared, pact, current_by_product(store))
    sources = []
    for v in acc.factors.versions:
        name, _, ver = v.partition("@")
        sources.append({"name": name, "version": ver or "unversioned"})
    out = []
    for fp, dfp in zip(fps, declared):
        periods = [(parse_time(a), parse_time(b)) for a, b in fp["periods"]]
        cov = coverage(data, list(fp["by_process_kg_per_unit"]), periods)
        ev = None
        if archive is not None:
            if trust is None:
                raise ValueError("integrity evidence needs the trust file of the gateways' keys")
            ev = collect_evidence(archive, trust, data.site, min(a for a, _ in periods), max(b for _, b in periods))
        kw = {"plant": data.plant, "country": settings.carbon.country, "pact": pact, "cov": cov, "evidence": ev, "factor_sources": sources}
        doc = build_footprint(fp, **kw)
        out.append({"fp": fp, "declared": dfp, "doc": doc, "coverage": cov, "build": kw})
    return out


def publish(store: Store, computed: list[dict[str, Any]], *, notify: bool = True, self_url: str = "") -> list[dict[str, Any]]:
    """Store new or changed footprints; returns per product {product, id, state: new|changed|unchanged, deprecated, notified}."""
    results, fresh = [], []
    for c in computed:
        doc = c["doc"]
        pid = doc["productIds"][0]
        active = [store.footprint(i) for i in store.active_ids(pid)]
        same = next((a for a in active if a is not None and _same_figure(a, doc)), None)
        if same is not None:
            results.append({"product": doc["productNameCompany"], "id": same["id"], "state": "unchanged", "deprecated": []})
            continue
        if active:
            doc = build_footprint(c["fp"], preceding=[a["id"] for a in active if a is not None], **c["build"])
            c["doc"] = doc
        old = store.publish(doc)
        fresh.append(doc["id"])
        results.append({"product": doc["productNameCompany"], "id": doc["id"], "state": "changed" if old else "new", "deprecated": old})
    notified: list[str] = []
    failed: list[str] = []
    if fresh and notify:
        if not self_url:
            raise ValueError("cannot notify partners without this host's public URL (start `pact serve` once or give --public-url)")
        notified, failed = notify_published(store, None, fresh, self_url)
    for r in results:
        r["notified"] = notified if r["state"] != "unchanged" else []
        r["notify_failed"] = failed if r["state"] != "unchanged" else []
    return results
