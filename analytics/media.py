"""Energy media and their conversion to common units: kWh, GJ and tonnes of coal equivalent (tce).

Each metered quantity belongs to one medium (electricity, natural gas, oxygen, steam, compressed
air, water). A plant compares and adds media only after converting them to energy with a factor
that is written down: every :class:`MediaFactor` carries its value, its basis and its source key
from the domain reference (``†`` marks general engineering practice that a site should replace
with its own measured or contractual value). A plant model can override any factor.

Secondary media (oxygen, compressed air) are converted at their *electricity* cost of production
(the energy the air separation unit or the compressor house spent on them), which is how energy
managers charge them to the consuming process. Water is metered and normalised but carries no
energy factor by default: summing it into kWh would be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from carbonedge.errors import ConfigError

#: 1 kWh = 3.6 MJ (exact).
MJ_PER_KWH = 3.6
#: 1 kgce = 29.3076 MJ (7,000 kcal/kg, the Chinese standard coal definition; domain reference note, †).
MJ_PER_KGCE = 29.3076


@dataclass(frozen=True)
class MediaFactor:
    """How one unit of a medium's counter converts to energy.

    ``kwh_per_unit`` is the energy content (or production cost, for secondary media) of one unit of
    ``unit``. ``kgce_per_unit`` is set explicitly where a standard prescribes a coal-equivalent
    factor that is not the calorific one (Chinese quotas convert electricity at 0.1229 kgce/kWh,
    the calorific "equivalent value" [S38]); otherwise it follows from the energy content.
    """

    medium: str
    quantity: str
    unit: str
    kwh_per_unit: float | None
    basis: str
    source: str
    kgce_per_unit: float | None = None

    def to_kwh(self, amount: float) -> float:
        if self.kwh_per_unit is None:
            raise ConfigError(f"medium {self.medium!r} ({self.unit}) has no energy factor; set one in the plant model's 'media' section")
        return amount * self.kwh_per_unit

    def to_gj(self, amount: float) -> float:
        return self.to_kwh(amount) * MJ_PER_KWH / 1000.0

    def to_tce(self, amount: float) -> float:
        if self.kgce_per_unit is not None:
            return amount * self.kgce_per_unit / 1000.0
        return self.to_kwh(amount) * MJ_PER_KWH / MJ_PER_KGCE / 1000.0


#: Default factors by counter quantity (canonical units from ``carbonedge/quantities.py``).
DEFAULT_FACTORS: dict[str, MediaFactor] = {
    f.quantity: f
    for f in (
        MediaFactor("electricity", "active_energy_import", "kWh", 1.0, "metered energy", "exact", kgce_per_unit=0.1229),
        MediaFactor("natural_gas", "gas_volume", "Nm3", 10.0, "net calorific value ≈ 36 MJ/Nm³", "†; use the supplier's NCV"),
        MediaFactor("oxygen", "oxygen_volume", "Nm3", 0.55, "ASU electricity per Nm³ O₂ (measured 0.46–0.64)", "[S26]"),
        MediaFactor("steam", "steam_mass", "t", 770.0, "≈ 2.77 GJ/t saturated steam enthalpy above feed water", "†; use the boiler's figure"),
        MediaFactor("compressed_air", "air_volume", "Nm3", 0.11, "compressor electricity per Nm³ at 7 bar(g)", "†; use the compressor house's kWh/Nm³"),
        MediaFactor("water", "water_volume", "m3", None, "not an energy carrier", "—"),
    )
}


def factors(overrides: dict[str, Any] | None = None) -> dict[str, MediaFactor]:
    """Default factors with a plant model's ``media`` overrides applied.

    ``overrides`` maps a counter quantity to ``{"kwh_per_unit": x, "source": "...", "basis": "..."}`` (or is a
    :class:`~carbonedge.plant.PlantModel`'s ``media``).
    A factor without a source is refused: a figure that goes into a verified report must say where
    its factors came from.
    """
    out = dict(DEFAULT_FACTORS)
    for quantity, spec in (overrides or {}).items():
        if hasattr(spec, "model_dump"):  # a PlantModel's media entry (carbonedge.plant.MediumFactor), already validated
            spec = {k: v for k, v in spec.model_dump().items() if v is not None or k == "kwh_per_unit"}
        if not isinstance(spec, dict) or "kwh_per_unit" not in spec:
            raise ConfigError(f"plant model media.{quantity}: give {{'kwh_per_unit': <number>, 'source': '<where it comes from>'}}")
        if not spec.get("source"):
            raise ConfigError(f"plant model media.{quantity}: 'source' is required (supplier certificate, standard, measurement)")
        base = out.get(quantity) or MediaFactor(spec.get("medium", quantity), quantity, spec.get("unit", "?"), None, "", "")
        try:
            kwh = None if spec["kwh_per_unit"] is None else float(spec["kwh_per_unit"])
        except (TypeError, ValueError):
            raise ConfigError(f"plant model media.{quantity}.kwh_per_unit: not a number: {spec['kwh_per_unit']!r}") from None
        out[quantity] = replace(
            base, kwh_per_unit=kwh, basis=str(spec.get("basis", base.basis)), source=str(spec["source"]),
            kgce_per_unit=spec.get("kgce_per_unit", None if quantity != "active_energy_import" else base.kgce_per_unit),
        )
    return out
