"""Carbon and tariff settings of a site: which factors, instruments, products and prices a report uses.

Read from a TOML file (``carbonedge report --carbon FILE``) and validated with
pydantic, so a wrong key or value is named with its place in the file. Without a
file, :func:`default_settings` gives documented defaults for the plant kind; the
report says it used them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from carbonedge.clock import parse_time
from carbonedge.errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Instrument(_Model):
    """A contractual instrument for market-based scope 2 (GHG Protocol Scope 2 Guidance [E9])."""

    name: str
    kind: Literal["certificate", "ppa", "green-tariff", "supplier-specific"] = "certificate"
    start: str = Field(description="ISO 8601 start of the period it covers")
    end: str
    mwh: float = Field(gt=0)
    factor: str = "contract.zero-emission"
    tracking_id: str | None = None

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str) -> str:
        parse_time(v)
        return v


class Material(_Model):
    """A purchased input that metering cannot reach: amount per product unit and its cradle-to-gate factor."""

    name: str
    amount_per_unit: float = Field(ge=0)
    unit: str = "kg"
    kg_co2e_per_amount: float = Field(ge=0)
    source: str = Field(description="where the factor comes from (supplier PCF, database and version)")
    cbam_precursor: bool = False
    cbam_direct_share: float = Field(1.0, ge=0, le=1, description="share of the factor that is direct emissions (CBAM precursors)")


class Product(_Model):
    """A product (steel grade, cell model) whose footprint is declared."""

    name: str
    unit: str = "t"
    output_process: str | None = None
    route: list[str] | None = None
    periods: list[tuple[str, str]] | None = None
    cn_code: str | None = None
    materials: list[Material] = []
    cbam_default_factor: str | None = None


class Battery(_Model):
    """What the EU Battery Regulation declaration needs beyond metered data (Art. 7 [R1])."""

    model: str = "cell model"
    manufacturer: str = "manufacturer"
    service_life_kwh_per_kwh_capacity: float = Field(
        1000.0, gt=0, description="total energy delivered over the expected service life per kWh of capacity")
    electricity_rule: Literal["national-mix", "market-based"] = "national-mix"
    distribution_kg_per_kwh: float | None = None
    end_of_life_kg_per_kwh: float | None = None


class Band(_Model):
    name: str
    hours: list[int]
    price: float = Field(ge=0)
    weekdays_only: bool = False


class Tariff(_Model):
    """Electricity tariff: energy price (flat or time-of-use bands), demand charge, power-factor rule."""

    currency: str = "CNY"
    utc_offset_h: float = Field(0.0, description="plant-local time offset from UTC; band hours are local")
    energy_price: float = Field(0.65, ge=0, description="price per kWh outside every band")
    bands: list[Band] = []
    demand_charge_per_kw_month: float = Field(0.0, ge=0)
    pf_threshold: float = Field(0.90, gt=0, le=1)
    pf_penalty_pct_per_point: float = Field(0.5, ge=0, description="bill surcharge in % per 0.01 of PF below the threshold")

    def prices(self, t: "np.ndarray") -> "np.ndarray":
        """Energy price at each epoch time ``t`` (band hours and weekdays in plant-local time)."""
        import numpy as np

        local = np.asarray(t, dtype=np.float64) + self.utc_offset_h * 3600.0
        hour = ((local // 3600) % 24).astype(int)
        weekday = ((local // 86400 + 3) % 7).astype(int)  # 1970-01-01 was a Thursday
        return np.array([self.price_at(int(h), int(w)) for h, w in zip(hour, weekday)])

    def price_at(self, hour: int, weekday: int) -> float:
        for b in self.bands:
            if hour in b.hours and not (b.weekdays_only and weekday >= 5):
                return b.price
        return self.energy_price


class Carbon(_Model):
    factor_library: str = "2026.1"
    extra_factor_files: list[str] = []
    grid_factor: str = "cn.grid.national-average.2023"
    residual_factor: str = "cn.grid.excl-market-nonfossil.2023"
    cbam_electricity_factor: str | None = None
    hourly_grid_factors: str | None = Field(None, description="CSV with ts, kg_co2_per_kwh: location-based factor per hour")
    gas_factor: str = "ipcc2006.fuel.natural-gas"
    gas_ncv: str = "site.ncv.natural-gas"
    country: str = "CN"
    installation: str = "installation"
    process_emissions: dict[str, str] = {}
    instruments: list[Instrument] = []


class Settings(_Model):
    carbon: Carbon = Carbon()
    tariff: Tariff = Tariff()
    products: list[Product] = []
    battery: Battery | None = None
    defaults_used: bool = False


def load_settings(path: Path) -> Settings:
    """Read and validate a site's carbon/tariff TOML file."""
    try:
        raw: dict[str, Any] = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{path} is not a valid carbon settings file:\n" + "\n".join(lines)) from None


def default_settings(plant: dict[str, Any]) -> Settings:
    """Documented defaults for a plant kind, used when a site gives no settings file (the report says so).

    China grid factors (§4.1 [E3, E4]) because the simulated plants are modelled on Chinese
    sites; a two-band time-of-use tariff typical of Chinese industrial tariffs (prices †).
    """
    kind = plant.get("plant", "steel")
    out = plant.get("output_process")
    tariff = Tariff(
        currency="CNY", energy_price=0.55, utc_offset_h=float(plant.get("utc_offset_h", 0.0)),
        bands=[Band(name="peak", hours=[8, 9, 10, 11, 17, 18, 19, 20], price=1.05), Band(name="valley", hours=[0, 1, 2, 3, 4, 5, 6, 23], price=0.30)],
        demand_charge_per_kw_month=38.0,
    )
    if kind == "battery":
        products = [Product(name="cell model (default)", unit="kWh", output_process=out, materials=[])]
        return Settings(tariff=tariff, products=products, battery=Battery(), defaults_used=True)
    carbon = Carbon(process_emissions={"eaf": "ipcc2006.process.eaf"} if "eaf" in plant.get("processes", {}) else {})
    # Crude steel (the cast output) as semi-finished product, CN 7207 (no default value in the library for it).
    products = [Product(name="crude steel, cast (default grade)", unit="t", output_process=out, cn_code="7207 12 10", materials=[])]
    return Settings(carbon=carbon, tariff=tariff, products=products, defaults_used=True)
