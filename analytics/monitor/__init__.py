"""Live plant monitoring: production-aware energy anomalies and meter-data faults, causally, per poll cycle.

:class:`PlantMonitor` is fed one poll cycle at a time (``step(t_ms, {device: {quantity: value}})``)
in time order and returns alert transitions (:class:`analytics.alerts.AlertEvent`). It never
looks ahead. It is a composition of checks, one module each, each learning from the first
``learn_hours`` of data (normal operation) and scoring every later cycle:

* :mod:`.meters` — meter data: counter rollovers and resets through the kernel's counter
  arithmetic (:mod:`carbonedge.energy`), stuck meters, silent devices (alone or as a group);
* :mod:`.clock` — the gateway's clock: timestamps that go back, or jump while the counters did not;
* :mod:`.weather` — the plant's weather station and the outdoor-conditions term of weather-driven
  loads (through the shared change-point regression, :func:`analytics.baseline.fit_baseline`);
* :mod:`.energy` — each process's power against what it drew in the same production state.

Intervals touched by a meter or clock fault are kept out of the energy check, so a bad meter never
raises a false energy alert.

**State.** :meth:`PlantMonitor.to_state` gives everything the monitor learned and tracks as plain
JSON values, each check contributing its own part; :meth:`PlantMonitor.from_state` rebuilds it,
validating every value. :mod:`.state` writes and reads the file (versioned, checksummed, atomic,
mode 0600); nothing is ever pickled.
"""

from carbonedge.analytics.monitor.files import read_device_csvs
from carbonedge.analytics.monitor.plant import PlantMonitor, plant_fingerprint
from carbonedge.analytics.monitor.settings import ENERGY_Q, FLOW_OF, POWER_Q, PRODUCTION_QS, MonitorSettings
from carbonedge.analytics.monitor.state import MonitorStateError
from carbonedge.analytics.monitor.weather import WeatherTerm, abs_humidity_gkg

__all__ = ["ENERGY_Q", "FLOW_OF", "POWER_Q", "PRODUCTION_QS", "MonitorSettings", "MonitorStateError", "PlantMonitor", "WeatherTerm",
           "abs_humidity_gkg", "plant_fingerprint", "read_device_csvs"]
