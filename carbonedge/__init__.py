"""carbonedge: the neutral package shared by every carbonedge process.

It holds what the edge gateway, the collector, the analytics jobs and the
simulators must agree on, and nothing that belongs to one of them:

- :mod:`carbonedge.wire` — the wire contract (what a gateway publishes, and the
  collector's acknowledgement), with the MQTT topic layout;
- :mod:`carbonedge.quantities` — the quantity catalogue with canonical units;
- :mod:`carbonedge.profiles` — meter register maps, used by the simulators to
  serve and by the gateway to read;
- :mod:`carbonedge.clock` — wall and virtual clocks;
- :mod:`carbonedge.app.services` — start/stop the project's own Mosquitto and InfluxDB;
- :mod:`carbonedge.errors` — the error family;
- :mod:`carbonedge.app.cli` — the ``carbonedge`` command.

Process packages (``edge``, ``collector``, ``analytics``, ``simulators``) import
from here and never from one another.
"""

__version__ = "0.1.0"
