"""The carbonedge dashboards, built in code from the InfluxDB contract (``docs/influx-schema.md``).

Five dashboards: plant overview, process drill-down, gateway and pipeline health,
alerts, carbon. Every panel is a raw InfluxQL query on the measurements of the
contract, filtered by the template variables ``$site``, ``$area``, ``$process``
(and ``$gateway``, ``$period``, ``$method`` where they apply).

Energy from counters: meters report a cumulative ``active_energy_import`` (kWh), so
energy per interval is ``non_negative_difference(max(...))`` per device, summed across
devices in an outer query. A counter reset then loses one interval instead of adding a
huge negative step; the gateway also reports resets as ``counter_reset`` events.
Plant totals add the meters that carry a ``process`` tag: tag incomer or check meters
without one, so they are shown but not added to process meters (no double counting).
"""

from __future__ import annotations

from carbonedge.analytics.grafana.model import Dashboard, Panel, Query, Variable, influx_annotation

# Filters shared by the queries. Tag values are restricted identifiers (wire contract), and
# Grafana regex-escapes variable values, so ``=~ /^$var$/`` matches exactly.
SITE = '"site" =~ /^$site$/'
AREA = '"area" =~ /^$area$/'
PROCESS = '"process" =~ /^$process$/'
GATEWAY = '"gateway" =~ /^$gateway$/'
PLANT = f"{SITE} AND {AREA} AND {PROCESS}"

V_SITE = Variable("site", "Site", 'SHOW TAG VALUES FROM "readings" WITH KEY = "site"')
V_AREA = Variable("area", "Area", f'SHOW TAG VALUES FROM "readings" WITH KEY = "area" WHERE {SITE}', multi=True)
V_PROCESS = Variable("process", "Process", f'SHOW TAG VALUES FROM "readings" WITH KEY = "process" WHERE {SITE} AND {AREA}', multi=True)
V_PROCESS_ONE = Variable("process", "Process", f'SHOW TAG VALUES FROM "readings" WITH KEY = "process" WHERE {SITE}')
V_GATEWAY = Variable("gateway", "Gateway", f'SHOW TAG VALUES FROM "readings" WITH KEY = "gateway" WHERE {SITE}', multi=True)
V_PERIOD = Variable("period", "EnPI period", options=("hour", "shift", "day", "month"), default="hour")
V_METHOD = Variable("method", "Scope 2 method", options=("location", "market"), default="location")
V_SEVERITY = Variable("severity", "Severity", f'SHOW TAG VALUES FROM "alerts" WITH KEY = "severity" WHERE {SITE}', multi=True)

# Energy meters are read every poll interval (60 s by default): a finer $__interval would give
# empty buckets, and non_negative_difference needs two filled buckets.
ENERGY_MIN_INTERVAL = "1m"


def _energy_per_interval(where: str, by: str) -> str:
    """kWh per $__interval summed over devices, grouped by ``by`` (a tag, e.g. process)."""
    return (
        'SELECT sum("kwh") AS "kWh" FROM (SELECT non_negative_difference(max("active_energy_import")) AS "kwh" '
        f'FROM "readings" WHERE {where} AND $timeFilter GROUP BY time($__interval), "device", "{by}") '
        f'WHERE $timeFilter GROUP BY time($__interval), "{by}" fill(none)'
    )


def _energy_in_range(where: str, by: str | None = None) -> str:
    """kWh over the whole time range (per ``by`` tag when given), from counter increases per interval."""
    group = f', "{by}"' if by else ""
    outer = f' GROUP BY "{by}"' if by else ""
    return (
        'SELECT sum("kwh") AS "kWh" FROM (SELECT non_negative_difference(max("active_energy_import")) AS "kwh" '
        f'FROM "readings" WHERE {where} AND $timeFilter GROUP BY time($__interval), "device"{group}) WHERE $timeFilter{outer}'
    )


def _production_in_range(field: str, where: str, by: str | None = None) -> str:
    group = f', "{by}"' if by else ""
    outer = f' GROUP BY "{by}"' if by else ""
    return (
        f'SELECT sum("p") AS "{field}" FROM (SELECT non_negative_difference(max("{field}")) AS "p" '
        f'FROM "readings" WHERE {where} AND $timeFilter GROUP BY time($__interval), "device"{group}) WHERE $timeFilter{outer}'
    )


def _power_by(where: str, by: str) -> str:
    """Mean kW per $__interval summed over the devices of each ``by`` group."""
    return (
        'SELECT sum("kw") AS "kW" FROM (SELECT mean("active_power") AS "kw" '
        f'FROM "readings" WHERE {where} AND $timeFilter GROUP BY time($__interval), "device", "{by}") '
        f'WHERE $timeFilter GROUP BY time($__interval), "{by}" fill(none)'
    )


ALERT_ANNOTATION = influx_annotation(
    "Energy alerts",
    f'SELECT "message", "wasted_kwh", "kind", "severity", "process" FROM "alerts" WHERE {SITE} AND "state" = \'open\' AND $timeFilter',
    text="message", tags="kind,severity,process", color="rgba(245, 54, 54, 1)",
)
GAP_ANNOTATION = influx_annotation(
    "Data gaps and counter resets",
    f'SELECT "detail", "kind", "device", "gateway" FROM "events" WHERE {SITE} AND $timeFilter',
    text="detail", tags="kind,gateway,device", color="rgba(255, 152, 48, 1)",
)

_LINKS = [{"type": "dashboards", "tags": ["carbonedge"], "asDropdown": True, "title": "carbonedge",
           "includeVars": True, "keepTime": True}]


def overview() -> Dashboard:
    d = Dashboard(
        "carbonedge-overview", "Plant overview",
        "Power, energy, production, energy intensity (SEC) and CO2 of one site, by process.",
        [V_SITE, V_AREA, V_PROCESS, V_METHOD], annotations=[ALERT_ANNOTATION, GAP_ANNOTATION], links=_LINKS,
    )
    d.row(
        "Now and in the selected range",
        Panel("stat", "Plant power (latest)", [Query(
            'SELECT sum("kw") AS "kW" FROM (SELECT last("active_power") AS "kw" FROM "readings" '
            f'WHERE {PLANT} AND $timeFilter GROUP BY "device")')], unit="kwatt", width=6, height=5,
            description="Sum of the latest active power of every meter tagged with a process."),
        Panel("stat", "Energy", [Query(_energy_in_range(PLANT))], unit="kwatth", width=6, height=5, min_interval=ENERGY_MIN_INTERVAL,
              description="Electricity imported in the selected range, from the meters' energy counters."),
        Panel("bargauge", "Production by process", [Query(_production_in_range("production_mass", PLANT, "process"), alias="$tag_process")],
              unit="massmg", width=6, height=5, min_interval=ENERGY_MIN_INTERVAL, decimals=1,
              options={"orientation": "horizontal", "displayMode": "basic", "reduceOptions": {"calcs": ["lastNotNull"]}},
              description="Tonnes counted by each process's PLC production counter. Not added up: each stage counts the same steel again."),
        Panel("stat", "CO2", [Query(
            f'SELECT sum("co2_kg") / 1000 AS "t CO2" FROM "carbon" WHERE {PLANT} AND ("scope" = \'1\' OR "method" = \'$method\') AND $timeFilter')],
            unit="massmg", width=6, height=5, decimals=1,
            description="Scope 1 plus scope 2 (method chosen above), from the carbon analytics; factor versions are in the Carbon dashboard."),
    )
    d.row(
        "Load",
        Panel("timeseries", "Power by process", [Query(_power_by(PLANT, "process"), alias="$tag_process")],
              unit="kwatt", width=24, height=9, stacked=True, min_interval=ENERGY_MIN_INTERVAL),
        Panel("timeseries", "Energy per interval by process", [Query(_energy_per_interval(PLANT, "process"), alias="$tag_process")],
              unit="kwatth", width=12, height=8, stacked=True, min_interval=ENERGY_MIN_INTERVAL, draw_style="bars"),
        Panel("timeseries", "Power factor by meter", [Query(
            f'SELECT mean("power_factor") FROM "readings" WHERE {PLANT} AND $timeFilter GROUP BY time($__interval), "device" fill(none)',
            alias="$tag_device")], unit="none", width=12, height=8, min_interval=ENERGY_MIN_INTERVAL,
            description="Low power factor costs reactive-energy charges; EAFs run uncompensated near 0.7-0.85."),
    )
    d.row(
        "Energy intensity (SEC)",
        Panel("table", "SEC from counters, selected range", [
            Query(_energy_in_range(PLANT, "process"), result_format="table"),
            Query(_production_in_range("production_mass", PLANT, "process"), result_format="table"),
        ], width=12, height=8, min_interval=ENERGY_MIN_INTERVAL,
            description="Energy and tonnes per process over the range; SEC = kWh / t. Processes without a mass counter show energy only.",
            transformations=[
                {"id": "merge", "options": {}},
                {"id": "calculateField", "options": {"mode": "binary", "alias": "SEC kWh/t", "replaceFields": False,
                                                     "binary": {"left": "kWh", "operator": "/", "right": "production_mass"}}},
                {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {"production_mass": "t"}}},
            ]),
        Panel("timeseries", "SEC by process (hourly EnPI)", [Query(
            f'SELECT mean("sec") FROM "enpi" WHERE {PLANT} AND "period" = \'hour\' AND $timeFilter GROUP BY time($__interval), "process" fill(none)',
            alias="$tag_process")], unit="none", width=12, height=8,
            description="Hourly specific energy consumption from the EnPI analytics (kWh per unit of product)."),
    )
    d.row(
        "Carbon",
        Panel("timeseries", "CO2 by process", [Query(
            f'SELECT sum("co2_kg") FROM "carbon" WHERE {PLANT} AND ("scope" = \'1\' OR "method" = \'$method\') AND $timeFilter '
            'GROUP BY time($__interval), "process" fill(none)', alias="$tag_process")],
            unit="masskg", width=24, height=8, stacked=True, draw_style="bars"),
    )
    return d


def process() -> Dashboard:
    where = f"{SITE} AND {PROCESS}"
    d = Dashboard(
        "carbonedge-process", "Process drill-down",
        "One process: load profile, heats or batches, SEC against its baseline, CUSUM of savings.",
        [V_SITE, V_PROCESS_ONE, V_PERIOD], annotations=[ALERT_ANNOTATION, GAP_ANNOTATION], links=_LINKS, time_from="now-12h",
    )
    d.row(
        "Load profile",
        Panel("timeseries", "Active power (mean and peak per interval)", [
            Query(f'SELECT mean("active_power") AS "mean", max("active_power") AS "peak" FROM "readings" WHERE {where} AND $timeFilter '
                  'GROUP BY time($__interval), "device" fill(none)', alias="$tag_device $col"),
        ], unit="kwatt", width=24, height=9, min_interval=ENERGY_MIN_INTERVAL),
        Panel("timeseries", "Energy per interval", [Query(_energy_per_interval(where, "process"), alias="kWh")],
              unit="kwatth", width=12, height=8, min_interval=ENERGY_MIN_INTERVAL, draw_style="bars"),
        Panel("timeseries", "Phase currents", [Query(
            f'SELECT mean("current_l1") AS "L1", mean("current_l2") AS "L2", mean("current_l3") AS "L3" FROM "readings" '
            f'WHERE {where} AND $timeFilter GROUP BY time($__interval), "device" fill(none)', alias="$tag_device $col")],
            unit="amp", width=12, height=8, min_interval=ENERGY_MIN_INTERVAL,
            description="Phase imbalance shows up here before it shows up in energy."),
    )
    d.row(
        "Production: heats, coils, batches",
        Panel("timeseries", "Production per interval", [
            Query(_production_per_interval("production_mass", where), alias="t"),
            Query(_production_per_interval("production_count", where), alias="pieces / heats"),
        ], unit="none", width=12, height=8, min_interval=ENERGY_MIN_INTERVAL, draw_style="bars",
            description="Increase of the PLC counters: tonnes (production_mass) and heats, coils or cells (production_count)."),
        Panel("timeseries", "Running", [Query(
            f'SELECT max("running") FROM "readings" WHERE {where} AND $timeFilter GROUP BY time($__interval), "device" fill(none)',
            alias="$tag_device")], unit="bool_on_off", width=12, height=8, min_interval=ENERGY_MIN_INTERVAL,
            description="The line's running signal: power while not running is idle load worth attacking."),
    )
    enpi = f'FROM "enpi" WHERE {where} AND "period" = \'$period\' AND $timeFilter'
    d.row(
        "Energy performance (ISO 50006)",
        Panel("timeseries", "Energy against baseline", [Query(
            f'SELECT sum("energy_kwh") AS "actual", sum("baseline_kwh") AS "baseline" {enpi} GROUP BY time($__interval) fill(none)',
            alias="$col")], unit="kwatth", width=12, height=8, draw_style="bars",
            description="Measured energy and the energy the baseline model expects for the same production."),
        Panel("timeseries", "SEC", [Query(f'SELECT mean("sec") AS "SEC" {enpi} GROUP BY time($__interval) fill(none)', alias="SEC")],
              unit="none", width=12, height=8, description="Energy per unit of product for each EnPI period."),
        Panel("timeseries", "CUSUM of savings", [Query(f'SELECT last("cusum_kwh") AS "CUSUM" {enpi} GROUP BY time($__interval) fill(none)',
                                                       alias="CUSUM kWh")],
              unit="kwatth", width=12, height=8,
              description="Cumulative baseline minus actual energy: a rising line is savings, a change of slope marks a change in performance."),
        Panel("timeseries", "Savings per period", [Query(f'SELECT sum("savings_kwh") AS "savings" {enpi} GROUP BY time($__interval) fill(none)',
                                                         alias="savings kWh")],
              unit="kwatth", width=12, height=8, draw_style="bars"),
    )
    return d


def _production_per_interval(field: str, where: str) -> str:
    return (
        f'SELECT sum("p") FROM (SELECT non_negative_difference(max("{field}")) AS "p" FROM "readings" '
        f'WHERE {where} AND $timeFilter GROUP BY time($__interval), "device") WHERE $timeFilter GROUP BY time($__interval) fill(none)'
    )


def health() -> Dashboard:
    gw = f"{SITE} AND {GATEWAY}"
    d = Dashboard(
        "carbonedge-health", "Gateway and pipeline health",
        "Are the numbers complete? Poll errors, outbox depth, data gaps, collector throughput, lag and dead letters.",
        [V_SITE, V_GATEWAY], annotations=[GAP_ANNOTATION], links=_LINKS, time_from="now-6h", refresh="30s",
    )
    d.row(
        "Data arriving",
        Panel("timeseries", "Readings stored per interval", [Query(
            f'SELECT count("seq") FROM "readings" WHERE {gw} AND $timeFilter GROUP BY time($__interval), "gateway" fill(0)',
            alias="$tag_gateway")], unit="short", width=12, height=8, min_interval=ENERGY_MIN_INTERVAL,
            description="Device readings per interval; a drop to zero while the plant runs is a gap."),
        Panel("table", "Last reading per device", [Query(
            f'SELECT last("seq") AS "seq" FROM "readings" WHERE {gw} AND $timeFilter GROUP BY "gateway", "device"',
            result_format="table")], width=12, height=8,
            description="Time of the newest stored reading of each device and its gateway sequence number."),
        Panel("timeseries", "Bad values", [Query(
            f'SELECT sum("bad_values") FROM "readings" WHERE {gw} AND $timeFilter GROUP BY time($__interval), "device" fill(none)',
            alias="$tag_device", may_be_empty="bad_values is written only when a meter returned a bad or implausible value")],
            unit="short", width=12, height=8, min_interval=ENERGY_MIN_INTERVAL, draw_style="bars"),
        Panel("table", "Gaps, counter resets and other events", [Query(
            f'SELECT "kind", "device", "detail", "seq" FROM "events" WHERE {gw} AND $timeFilter',
            result_format="table", may_be_empty="events are written only when something happened (gap, overflow, counter reset, clock step)")],
            width=12, height=8),
    )
    d.row(
        "Gateways",
        Panel("timeseries", "Outbox depth", [Query(
            f'SELECT max("outbox_batches") FROM "gateway_health" WHERE {gw} AND $timeFilter GROUP BY time($__interval), "gateway" fill(none)',
            alias="$tag_gateway")], unit="short", width=8, height=8,
            description="Poll cycles on the gateway's disk not yet confirmed by the collector. Growing = broker or collector unreachable."),
        Panel("timeseries", "Oldest unconfirmed batch", [Query(
            f'SELECT max("outbox_age_s") FROM "gateway_health" WHERE {gw} AND $timeFilter GROUP BY time($__interval), "gateway" fill(none)',
            alias="$tag_gateway")], unit="s", width=8, height=8),
        Panel("timeseries", "Poll latency p95", [Query(
            f'SELECT max("poll_latency_ms_p95") FROM "gateway_health" WHERE {gw} AND $timeFilter GROUP BY time($__interval), "gateway" fill(none)',
            alias="$tag_gateway")], unit="ms", width=8, height=8),
        Panel("timeseries", "Poll errors by device", [Query(
            f'SELECT sum("errors") FROM "device_health" WHERE {gw} AND $timeFilter GROUP BY time($__interval), "device" fill(none)',
            alias="$tag_device")], unit="short", width=12, height=8, draw_style="bars"),
        Panel("table", "Device state", [Query(
            f'SELECT last("reads") AS "reads", last("errors") AS "errors", last("latency_ms") AS "latency ms" FROM "device_health" '
            f'WHERE {gw} AND $timeFilter GROUP BY "gateway", "device", "state"', result_format="table")], width=12, height=8),
        Panel("timeseries", "Dropped batches (outbox overflow)", [Query(
            f'SELECT max("dropped_batches") FROM "gateway_health" WHERE {gw} AND $timeFilter GROUP BY time($__interval), "gateway" fill(none)',
            alias="$tag_gateway")], unit="short", width=8, height=8,
            description="Must stay 0: a dropped batch is data lost on the gateway (it is also recorded as an overflow event)."),
        Panel("timeseries", "Gateway CPU", [Query(
            f'SELECT mean("cpu_pct") FROM "gateway_health" WHERE {gw} AND $timeFilter GROUP BY time($__interval), "gateway" fill(none)',
            alias="$tag_gateway")], unit="percent", width=8, height=8),
        Panel("timeseries", "Gateway memory", [Query(
            f'SELECT mean("rss_mb") FROM "gateway_health" WHERE {gw} AND $timeFilter GROUP BY time($__interval), "gateway" fill(none)',
            alias="$tag_gateway")], unit="decmbytes", width=8, height=8),
    )
    d.row(
        "Collectors",
        Panel("timeseries", "Messages received and readings written", [Query(
            'SELECT max("received") AS "messages received", max("readings_written") AS "readings written" '
            'FROM "pipeline" WHERE $timeFilter GROUP BY time($__interval), "collector" fill(none)', alias="$tag_collector $col")],
            unit="short", width=12, height=8,
            description="Cumulative counters of each collector since it started (the slope is the rate; they restart from 0 "
                        "when the collector restarts). Measurement pipeline, stamped with the wall clock."),
        Panel("timeseries", "Lag and backlog", [Query(
            'SELECT max("lag_s") AS "lag s", max("queue_depth") AS "queued messages" FROM "pipeline" WHERE $timeFilter '
            'GROUP BY time($__interval), "collector" fill(none)', alias="$tag_collector $col")], unit="short", width=12, height=8,
            description="Lag: age of the oldest message in the last write. A growing queue means InfluxDB cannot keep up."),
        Panel("timeseries", "Dead letters, duplicates and conflicts", [
            Query('SELECT max("deadlettered") AS "dead-lettered", max("duplicate_deliveries") AS "duplicate deliveries", '
                  'max("conflicts") AS "conflicts" FROM "pipeline" WHERE $timeFilter GROUP BY time($__interval), "collector" fill(none)',
                  alias="$tag_collector $col"),
            Query('SELECT max(/^rejected_/) FROM "pipeline" WHERE $timeFilter GROUP BY time($__interval), "collector" fill(none)',
                  alias="$tag_collector $col",
                  may_be_empty="a rejected_<reason> field exists only once a message was rejected for that reason"),
        ], unit="short", width=12, height=8,
            description="Cumulative since the collector started. Any step up needs a look: dead-lettered messages (by reason in "
                        "the second query; they go to the gateway's deadletter topic), replays InfluxDB absorbed, and points "
                        "that conflicted with a different stored value (never overwritten)."),
        Panel("timeseries", "Disk spool (InfluxDB unavailable)", [Query(
            'SELECT max("spool_bytes") FROM "pipeline" WHERE $timeFilter GROUP BY time($__interval), "collector" fill(none)',
            alias="$tag_collector")], unit="bytes", width=12, height=8,
            description="Readings the collector keeps on disk while InfluxDB refuses writes; drained when it is back."),
    )
    return d


def alerts() -> Dashboard:
    where = f'{SITE} AND "severity" =~ /^$severity$/'
    d = Dashboard(
        "carbonedge-alerts", "Energy alerts",
        "Anomalies and drifts found by the analytics, with the energy they waste.",
        [V_SITE, V_SEVERITY], annotations=[ALERT_ANNOTATION], links=_LINKS, time_from="now-7d",
    )
    d.row(
        "Alerts",
        Panel("stat", "Open alerts", [Query(f'SELECT count("alert_id") FROM "alerts" WHERE {where} AND "state" = \'open\' AND $timeFilter')],
              unit="short", width=6, height=5),
        Panel("stat", "Energy wasted", [Query(f'SELECT sum("wasted_kwh") FROM "alerts" WHERE {where} AND "state" = \'open\' AND $timeFilter')],
              unit="kwatth", width=6, height=5, description="Sum of the excess energy estimated at each alert's opening."),
        Panel("timeseries", "Wasted energy by process", [Query(
            f'SELECT sum("wasted_kwh") FROM "alerts" WHERE {where} AND "state" = \'open\' AND $timeFilter GROUP BY time($__interval), "process" fill(none)',
            alias="$tag_process")], unit="kwatth", width=12, height=5, draw_style="bars", stacked=True),
        Panel("table", "Alert log", [Query(
            f'SELECT "alert_id", "state", "severity", "kind", "process", "device", "score", "wasted_kwh", "message" FROM "alerts" '
            f'WHERE {where} AND $timeFilter', result_format="table")], width=24, height=12,
            description="Every alert state change (open, update, resolved), newest first."),
    )
    return d


def carbon() -> Dashboard:
    c = f'FROM "carbon" WHERE {PLANT} AND ("scope" = \'1\' OR "method" = \'$method\') AND $timeFilter'
    d = Dashboard(
        "carbonedge-carbon", "Carbon",
        "Scope 1 and 2 CO2 by process and per product, with the emission-factor versions behind every figure.",
        [V_SITE, V_AREA, V_PROCESS, V_METHOD], links=_LINKS, time_from="now-30d", refresh="5m",
    )
    d.row(
        "Emissions",
        Panel("stat", "Scope 1", [Query(f'SELECT sum("co2_kg") / 1000 AS "t CO2" {c} AND "scope" = \'1\'')],
              unit="massmg", width=6, height=5, decimals=1),
        Panel("stat", "Scope 2 ($method-based)", [Query(f'SELECT sum("co2_kg") / 1000 AS "t CO2" {c} AND "scope" = \'2\'')],
              unit="massmg", width=6, height=5, decimals=1),
        Panel("stat", "Electricity behind scope 2", [Query(f'SELECT sum("energy_kwh") {c} AND "scope" = \'2\'')],
              unit="kwatth", width=6, height=5),
        Panel("table", "Emission factor versions", [Query(
            f'SELECT last("factor_version") AS "factor version" FROM "carbon" WHERE {PLANT} AND $timeFilter GROUP BY "scope", "method"',
            result_format="table")], width=6, height=5, description="Every CO2 figure on this page was computed with these factor versions."),
        Panel("timeseries", "CO2 by process and scope", [Query(
            f'SELECT sum("co2_kg") {c} GROUP BY time($__interval), "process", "scope" fill(none)', alias="$tag_process scope $tag_scope")],
            unit="masskg", width=24, height=9, stacked=True, draw_style="bars"),
    )
    d.row(
        "Per product",
        Panel("table", "Footprint per tonne by process", [
            Query(f'SELECT sum("co2_kg") AS "co2_kg" {c} GROUP BY "process"', result_format="table"),
            Query(f'SELECT sum("production") AS "production" FROM "enpi" WHERE {PLANT} AND "period" = \'day\' AND $timeFilter GROUP BY "process"',
                  result_format="table"),
        ], width=24, height=8,
            description="kg CO2 (scope 1 + scope 2) per unit of product: daily EnPI production joined with carbon by process.",
            transformations=[
                {"id": "merge", "options": {}},
                {"id": "calculateField", "options": {"mode": "binary", "alias": "kg CO2 per unit", "replaceFields": False,
                                                     "binary": {"left": "co2_kg", "operator": "/", "right": "production"}}},
                {"id": "organize", "options": {"excludeByName": {"Time": True}}},
            ]),
    )
    return d


def build_dashboards() -> list[Dashboard]:
    """Every carbonedge dashboard, in menu order."""
    return [overview(), process(), health(), alerts(), carbon()]
