"""Write hourly CO2 per process back to InfluxDB (measurement ``carbon``, docs/influx-schema.md)."""

from __future__ import annotations

from carbonedge.analytics.carbon.accounts import Accounts
from carbonedge.influx import InfluxClient, lp_string, lp_tag


def carbon_lines(acc: Accounts) -> list[str]:
    """Line protocol for the ``carbon`` measurement: per bin, process, scope and method (bins with energy only)."""
    version = ";".join(acc.factors.versions)
    lines: list[str] = []
    starts = (acc.edges[:-1] * 1000).astype("int64")
    site = lp_tag(acc.site)
    for name, p in acc.processes.items():
        base = f"carbon,site={site},area={lp_tag(p.area or 'plant')},process={lp_tag(name)}"
        series = (("2", "location", p.scope2_location_kg, p.energy_kwh), ("2", "market", p.scope2_market_kg, p.energy_kwh),
                  ("1", "location", p.scope1_kg, None))
        for scope, method, co2, energy in series:
            for i, ts in enumerate(starts):
                if co2[i] == 0 and (energy is None or energy[i] == 0):
                    continue
                fields = f"co2_kg={float(co2[i])!r}"
                if energy is not None:
                    fields += f",energy_kwh={float(energy[i])!r}"
                fields += f",factor_version={lp_string(version)}"
                lines.append(f"{base},scope={scope},method={method} {fields} {int(ts)}")
    return lines


def write_carbon(acc: Accounts, url: str, database: str, *, timeout_s: float = 60.0, batch: int = 5000,
                 auth: tuple[str, str] | None = None) -> int:
    """POST the accounts' hourly CO2 to InfluxDB ``/write``; returns the number of points written."""
    with InfluxClient(url, database, username=auth[0] if auth else None, password=auth[1] if auth else None, timeout_s=timeout_s) as db:
        return db.write_lines(carbon_lines(acc), what="carbon figures", batch=batch)
