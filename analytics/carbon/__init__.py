"""Carbon accounting: emission-factor library, scope 1/2 accounts, product footprints.

Public API::

    from carbonedge.analytics.carbon import FactorLibrary, compute_accounts, default_settings, from_csv_dir, from_influx
    data = from_influx(InfluxReader(url, db), plant_model, start_s, end_s)   # or from_csv_dir(path)
    acc = compute_accounts(data, default_settings(plant_model))
    acc.plant_totals()["scope2_location_kg"]
"""

from carbonedge.analytics.carbon.accounts import Accounts, ProcessAccount, compute_accounts
from carbonedge.analytics.carbon.data import PlantData, from_csv_dir, from_influx, from_meter_csv
from carbonedge.analytics.carbon.factors import Factor, FactorLibrary
from carbonedge.analytics.carbon.footprint import footprints, product_footprint
from carbonedge.analytics.carbon.influx_out import carbon_lines, write_carbon
from carbonedge.analytics.carbon.settings import Settings, default_settings, load_settings

__all__ = [
    "Accounts", "Factor", "FactorLibrary", "PlantData", "ProcessAccount", "Settings", "carbon_lines", "compute_accounts",
    "default_settings", "footprints", "from_csv_dir", "from_influx", "from_meter_csv", "load_settings", "product_footprint", "write_carbon",
]
