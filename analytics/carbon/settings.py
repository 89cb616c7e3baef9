"""Carbon and tariff settings of a site: which factors, instruments, products and prices a report uses.

Read from a TOML file (``carbonedge report --carbon FILE``) and validated with
pydantic, so a wrong key or value is named with its place in the file. Without a
file, :func:`default_settings` gives documented defaults for the plant kind; the
report says it used them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from carbonedge.clock import parse_time
from carbonedge import settings as settings_base
from carbonedge.plant import PlantModel
from carbonedge.settings import SettingsModel

if TYPE_CHECKING:
    import numpy as np


class _Model(SettingsModel):
    pass


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
    cbam_default_factor: str | None = Field(None, description="factor id of the CBAM default value (base, before the year's mark-up)")
    cbam_route: str | None = Field(None, description="CBAM production route, e.g. 'EAF, scrap' or 'BF/BOF'")
    qualifying_parameters: dict[str, float | str] = Field({}, description="CBAM qualifying parameters, e.g. scrap share, alloy content")


class Battery(_Model):
    """What the EU Battery Regulation declaration needs beyond metered data (Art. 7 [R1])."""

    model: str = "cell model"
    manufacturer: str = "manufacturer"
    service_life_kwh_per_kwh_capacity: float = Field(
        1000.0, gt=0, description="total energy delivered over the expected service life per kWh of capacity")
    distribution_kg_per_kwh: float | None = None
    distribution_source: str | None = Field(None, description="where the declared distribution value comes from (cite source keys)")
    end_of_life_kg_per_kwh: float | None = None
    end_of_life_source: str | None = Field(None, description="where the declared end-of-life value comes from (cite source keys)")
    direct_connection_factor: str | None = Field(
        None, description="factor of directly connected supply (on-site or direct line); both variants may use it")
    direct_connection_mwh: float = Field(0.0, ge=0, description="MWh of the period supplied over the direct connection")
    capacity_kwh: float | None = Field(None, gt=0, description="energy capacity of one battery (for the absolute footprint per battery)")
    performance_class: str | None = Field(None, description="carbon-footprint performance class, once the delegated act defines them")
    performance_class_act: str | None = Field(
        None, description="the delegated act under Art. 7(2) whose class thresholds give performance_class (required with it)")
    study_url: str | None = Field(None, description="web link to the public version of the supporting study (Art. 7(1))")
    passport_variant: Literal["draft-delegated-act", "jrc"] = "draft-delegated-act"


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@lru_cache(maxsize=64)
def _window_mask(text: str) -> tuple[bool, ...]:
    """Minute-of-week mask (Monday 00:00 = 0) of a window like 'Mon-Fri 08:00-20:00', 'Sat 06:00-14:00' or '24/7'."""
    t = text.strip().lower()
    if t in ("24/7", "always"):
        return (True,) * (7 * 1440)
    try:
        days, hours = t.split()
        if "-" in days:
            d0, d1 = (_DAYS.index(d[:3]) for d in days.split("-"))
            day_list = [d % 7 for d in range(d0, d1 + (7 if d1 < d0 else 0) + 1)]
        else:
            day_list = [_DAYS.index(days[:3])]
        h0, h1 = hours.split("-")
        m0, m1 = int(h0[:2]) * 60 + int(h0[3:5]), int(h1[:2]) * 60 + int(h1[3:5])
    except (ValueError, IndexError):
        raise ValueError(f"tariff window {text!r}: write it like 'Mon-Fri 08:00-20:00', 'Sat 06:00-14:00' or '24/7'") from None
    mask = [False] * (7 * 1440)
    for d in day_list:
        for k in range((m1 - m0) % 1440 or 1440):
            mask[(d * 1440 + m0 + k) % (7 * 1440)] = True
    return tuple(mask)


class Band(_Model):
    """A tariff band: by hours of every day (``hours``) or by weekly windows (``windows``), plant-local time."""

    name: str
    hours: list[int] = []
    windows: list[str] = []
    price: float = Field(ge=0)
    weekdays_only: bool = False

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: list[str]) -> list[str]:
        for w in v:
            _window_mask(w)
        return v

    def covers(self, hour: int, weekday: int, minute_of_week: int) -> bool:
        if self.windows:
            return any(_window_mask(w)[minute_of_week] for w in self.windows)
        return hour in self.hours and not (self.weekdays_only and weekday >= 5)


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
        mow = ((local // 60 + 3 * 1440) % (7 * 1440)).astype(int)
        return np.array([self.price_at(int(h), int(w), int(m)) for h, w, m in zip(hour, weekday, mow)])

    def price_at(self, hour: int, weekday: int, minute_of_week: int | None = None) -> float:
        """Price of the first band covering the time (bands are checked in order); else ``energy_price``."""
        mow = weekday * 1440 + hour * 60 if minute_of_week is None else minute_of_week
        for b in self.bands:
            if b.covers(hour, weekday, mow):
                return b.price
        return self.energy_price


class Carbon(_Model):
    factor_library: str = "2026.2"
    allow_mixed_factor_years: bool = False
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


class Cbam(_Model):
    """CBAM definitive-period settings (Regulation (EU) 2023/956 as amended by 2025/2083; Implementing Reg. 2025/2547)."""

    electricity_basis: Literal["grid", "ppa", "direct-link"] = Field(
        "grid", description="Art. 8 of 2025/2547: actual electricity factors only with a direct technical link or a PPA")
    electricity_factor: str | None = Field(None, description="factor id; default: the [carbon] grid factor")
    electricity_evidence: str | None = Field(None, description="contract or connection evidence (required for ppa / direct-link)")
    certificate_price_eur_per_t: float | None = Field(None, gt=0, description="default: the library's published price of the year")
    carbon_price_paid_eur_per_t: float = Field(0.0, ge=0, description="carbon price effectively paid in the country of origin")
    carbon_price_paid_evidence: str | None = None
    unlocode: str | None = None
    operator: str | None = None
    verifier: str | None = None


class ChinaEts(_Model):
    """China national ETS report for iron and steel (MEE steel guideline, monthly evidence)."""

    enterprise: str = "enterprise"
    credit_code: str | None = Field(None, description="unified social credit code of the legal entity")
    grid_factor: str | None = Field(None, description="factor id; default: the newest national-average factor published for the year")
    max_gap_factor: float = Field(3.0, gt=1, description="a gap is a pause between readings longer than this many poll intervals")


class Settings(_Model):
    carbon: Carbon = Carbon()
    cbam: Cbam = Cbam()
    china_ets: ChinaEts = ChinaEts()
    tariff: Tariff = Tariff()
    products: list[Product] = []
    battery: Battery | None = None
    defaults_used: bool = False


def load_settings(path: Path) -> Settings:
    """Read and validate a site's carbon/tariff TOML file (with ``CARBONEDGE_CARBON__...`` environment overrides,
    :mod:`carbonedge.settings`); every problem is one line ``file: key: reason``."""
    return settings_base.load(Settings, path, kind="carbon")


def default_settings(plant: PlantModel | dict[str, Any]) -> Settings:
    """Documented defaults for a plant kind, used when a site gives no settings file (the report says so).

    China grid factors (§4.1 [E3, E4]) because the simulated plants are modelled on Chinese
    sites; a two-band time-of-use tariff typical of Chinese industrial tariffs (prices †).
    """
    plant = PlantModel.coerce(plant)
    kind = plant.plant
    out = plant.output_process
    offset = plant.calendar.utc_offset_h
    tariff = Tariff(
        currency="CNY", energy_price=0.55, utc_offset_h=offset,
        bands=[Band(name="peak", hours=[8, 9, 10, 11, 17, 18, 19, 20], price=1.05), Band(name="valley", hours=[0, 1, 2, 3, 4, 5, 6, 23], price=0.30)],
        demand_charge_per_kw_month=38.0,
    )
    pt = plant.tariffs
    if pt is not None and pt.bands:
        # The plant model carries its own time-of-use tariff (e.g. a simulator scenario): use it.
        bands = [Band(name=b.name, windows=list(b.windows), hours=list(b.hours), price=b.price_per_kwh) for b in pt.bands]
        tariff = Tariff(currency=pt.currency, energy_price=min(b.price for b in bands), utc_offset_h=offset, bands=bands,
                        demand_charge_per_kw_month=pt.demand_charge_per_kw_month)
    if kind == "meter":
        # One meter's CSV without a plant model: energy and carbon only, no product to attribute them to.
        return Settings(tariff=tariff, products=[], defaults_used=True)
    if kind == "battery":
        products = [Product(name="cell model (default)", unit="kWh", output_process=out, materials=[])]
        return Settings(tariff=tariff, products=products, battery=Battery(), defaults_used=True)
    carbon = Carbon(process_emissions={"eaf": "ipcc2006.process.eaf"} if "eaf" in plant.processes else {})
    # Crude steel (the cast output) as semi-finished product, CN 7207 (no default value in the library for it).
    products = [Product(name="crude steel, cast (default grade)", unit="t", output_process=out, cn_code="7207 12 10", materials=[])]
    return Settings(carbon=carbon, tariff=tariff, products=products, defaults_used=True)


def with_grid_factor(settings: Settings, factor_id: str) -> tuple[Settings, str | None]:
    """``settings`` with ``factor_id`` as the location-based grid factor; returns a note when the residual mix changes too.

    A residual mix is only valid for its own grid: when the settings' residual mix is for another
    region than the new factor and the library has none for that region, market-based scope 2 falls
    back to the location-based factor (the last step of the GHG Protocol Scope 2 Guidance's factor
    hierarchy, Table 6.3), and the note says so.
    """
    from carbonedge.analytics.carbon.factors import FactorLibrary

    lib = FactorLibrary.load(settings.carbon.factor_library, [Path(p) for p in settings.carbon.extra_factor_files])
    grid = lib.get(factor_id)
    residual = lib.get(settings.carbon.residual_factor)
    update: dict[str, Any] = {"grid_factor": factor_id}
    note = None
    if residual.region != grid.region:
        update["residual_factor"] = factor_id
        note = (f"No residual mix for {grid.region} in the factor library: market-based scope 2 uses the grid factor {factor_id} "
                f"(GHG Protocol Scope 2 Guidance, Table 6.3, last step); give a --carbon settings file with a residual_factor to change it.")
    return settings.model_copy(update={"carbon": settings.carbon.model_copy(update=update)}), note
