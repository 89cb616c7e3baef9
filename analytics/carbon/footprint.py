"""Product carbon footprints (cradle-to-gate) from the carbon accounts.

Allocation rules, stated in every result:

- ``installation-output`` (default): all metered scope 1 and scope 2 emissions of
  the installation in the product's periods, divided by the output of the product's
  output process (single product per period; mass or capacity allocation).
- ``process-chain`` (when a product names its ``route``): each process on the route
  contributes its emissions per unit of *its own* production (a tonne passes every
  stage once); route processes without a production counter (utilities) are
  allocated by the output process's production.

Purchased materials, which metering cannot reach, enter as declared inputs (amount
per unit x a cradle-to-gate factor with its source). Boundary: cradle-to-gate; capital
goods, transport to the customer, use and end of life are outside (ISO 14067 partial
PCF [R11]; PAS 2050 excludes capital goods [R10]).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from carbonedge.analytics.carbon.accounts import Accounts
from carbonedge.analytics.carbon.settings import Product, Settings
from carbonedge.clock import iso, parse_time
from carbonedge.errors import ConfigError
from carbonedge.plant import PlantModel

BOUNDARY = ("cradle-to-gate: purchased materials (declared factors) + the plant's metered energy (scope 1 fuels and process "
            "emissions, scope 2 electricity). Excluded: capital goods, transport to customers, use phase, end of life.")


def _period_mask(acc: Accounts, product: Product) -> np.ndarray:
    mids = (acc.edges[:-1] + acc.edges[1:]) / 2
    if not product.periods:
        return np.ones(mids.size, dtype=bool)
    m = np.zeros(mids.size, dtype=bool)
    for a, b in product.periods:
        m |= (mids >= parse_time(a)) & (mids < parse_time(b))
    return m


def product_footprint(acc: Accounts, product: Product, plant: PlantModel | dict[str, Any]) -> dict[str, Any]:
    """Footprint of one product per declared unit, with stages, allocation rule and sources."""
    out_proc = product.output_process or PlantModel.coerce(plant).output_process
    if out_proc not in acc.processes:
        raise ConfigError(f"product {product.name!r}: output process {out_proc!r} is not a process of the plant "
                          f"(known: {', '.join(acc.processes)})")
    mask = _period_mask(acc, product)
    out = acc.processes[out_proc]
    output = float(out.production[mask].sum())
    if output <= 0:
        raise ConfigError(f"product {product.name!r}: {out_proc} produced nothing in the product's period; no footprint")
    s1 = s2l = s2m = e_kwh = 0.0
    contributions: dict[str, dict[str, float]] = {}
    if product.route:
        rule = ("process-chain: each route process's emissions per unit of its own production, summed along the route "
                f"({' -> '.join(product.route)}); route utilities allocated by {out_proc} output")
        for name in product.route:
            if name not in acc.processes:
                raise ConfigError(f"product {product.name!r}: route process {name!r} is not in the plant")
            p = acc.processes[name]
            denom = float(p.production[mask].sum()) if p.production_unit else output
            if denom <= 0:
                raise ConfigError(f"product {product.name!r}: route process {name} produced nothing in the period")
            c = {k: float(getattr(p, k)[mask].sum()) / denom for k in ("scope1_kg", "scope2_location_kg", "scope2_market_kg", "energy_kwh")}
            contributions[name] = c
    else:
        rule = f"installation-output: all metered emissions of the installation in the period / output of {out_proc} ({out.production_unit})"
        for name, p in acc.processes.items():
            contributions[name] = {k: float(getattr(p, k)[mask].sum()) / output
                                   for k in ("scope1_kg", "scope2_location_kg", "scope2_market_kg", "energy_kwh")}
    for c in contributions.values():
        s1 += c["scope1_kg"]
        s2l += c["scope2_location_kg"]
        s2m += c["scope2_market_kg"]
        e_kwh += c["energy_kwh"]
    mats = [{"name": m.name, "amount_per_unit": m.amount_per_unit, "unit": m.unit, "kg_co2e_per_amount": m.kg_co2e_per_amount,
             "kg_co2e_per_unit": m.amount_per_unit * m.kg_co2e_per_amount, "source": m.source} for m in product.materials]
    upstream = sum(m["kg_co2e_per_unit"] for m in mats)
    periods = product.periods or [(iso(acc.start), iso(acc.end))]
    return {
        "product": product.name, "declared_unit": f"1 {product.unit}", "output_process": out_proc, "output": output,
        "output_unit": out.production_unit, "periods": [list(p) for p in periods], "allocation_rule": rule, "boundary": BOUNDARY,
        "energy_kwh_per_unit": e_kwh,
        "stages_kg_co2e_per_unit": {"upstream_materials": upstream, "manufacturing_scope1": s1,
                                    "manufacturing_scope2_location": s2l, "manufacturing_scope2_market": s2m},
        "total_kg_co2e_per_unit_location": upstream + s1 + s2l,
        "total_kg_co2e_per_unit_market": upstream + s1 + s2m,
        "by_process_kg_per_unit": contributions,
        "materials": mats,
        "factor_libraries": acc.factors.versions,
    }


def footprints(acc: Accounts, settings: Settings, plant: PlantModel | dict[str, Any]) -> list[dict[str, Any]]:
    plant = PlantModel.coerce(plant)
    return [product_footprint(acc, p, plant) for p in settings.products]
