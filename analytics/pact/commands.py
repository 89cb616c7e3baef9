"""``carbonedge pact ...``: serve, publish and fetch PACT v3.0 product footprints; manage clients and partners.

Parsers only here; every handler imports what it needs, so ``carbonedge --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from carbonedge.argtypes import InputDir, InputFile, Number, OutputDir, Time

SECRET_ENV = "CARBONEDGE_PACT_SECRET"


def _store(a: argparse.Namespace) -> Any:
    from carbonedge.analytics.pact.store import Store

    return Store(Path(a.db))


def _secret(a: argparse.Namespace, *, required: bool = True) -> str | None:
    from carbonedge.errors import ConfigError

    v = os.environ.get(a.secret_env)
    if v is None and required:
        raise ConfigError(f"the client secret is read from the environment variable {a.secret_env} (never the command line); it is not set")
    return v


def cmd_serve(a: argparse.Namespace) -> int:
    from carbonedge.analytics.pact.server import serve

    st = _store(a)
    n = len(st.footprints())
    if not st.clients():
        print(f"note: {a.db} has no clients yet; add one with `carbonedge pact client add ID --db {a.db}`", file=sys.stderr)
    scheme = "https" if a.cert else "http"
    print(f"PACT v3.0 host on {scheme}://{a.host}:{a.port} serving {n} footprint(s) from {a.db}", flush=True)
    serve(st, host=a.host, port=a.port, certfile=a.cert, keyfile=a.key, insecure_http=a.insecure_http, public_url=a.public_url,
          log_level="debug" if a.verbose else "warning", token_ttl_s=a.token_ttl, max_body=a.max_body)
    return 0


def cmd_client_add(a: argparse.Namespace) -> int:
    st = _store(a)
    secret = st.add_client(a.client_id, _secret(a, required=False) if a.secret_from_env else None, tuple(a.scope or ("footprint:list", "footprint:read")),
                           a.label or "")
    print(f"client {a.client_id} added to {a.db} (scopes: {' '.join(a.scope or ['footprint:list', 'footprint:read'])}); the secret is stored hashed")
    if not a.secret_from_env:
        print(f"secret (shown once; give it to the customer over a secure channel): {secret}")
    return 0


def cmd_client_list(a: argparse.Namespace) -> int:
    for c in _store(a).clients():
        print(f"{c['client_id']:30s} {' '.join(c['scopes']):32s} {c['label']}")
    return 0


def cmd_client_remove(a: argparse.Namespace) -> int:
    from carbonedge.errors import ConfigError

    if not _store(a).remove_client(a.client_id):
        raise ConfigError(f"no client {a.client_id!r} in {a.db}")
    print(f"client {a.client_id} removed; its tokens no longer work")
    return 0


def cmd_partner_add(a: argparse.Namespace) -> int:
    from carbonedge.analytics.pact.client import check_url

    url = check_url(a.url)
    _store(a).add_partner(url, a.client_id, _secret(a) or "", ca_file=a.ca_file, notify=not a.no_notify)
    print(f"partner {url} added: requests from it are answered there" + ("" if a.no_notify else ", and it is notified of new footprints"))
    return 0


def _load_data(a: argparse.Namespace) -> Any:
    from carbonedge.analytics.carbon import from_csv_dir, from_influx
    from carbonedge.clock import parse_time
    from carbonedge.errors import ConfigError
    from carbonedge.plant import PlantModel

    start = parse_time(a.start) if a.start else None
    end = parse_time(a.end) if a.end else None
    if a.csv:
        return from_csv_dir(Path(a.csv), start=start, end=end)
    if not a.plant or start is None or end is None:
        raise ConfigError("footprints from InfluxDB need --plant FILE, --from and --to (or --csv DIR for an offline export)")
    from carbonedge.analytics import InfluxReader

    plant = PlantModel.load(a.plant)
    pw = os.environ.get("CARBONEDGE_INFLUX_PASSWORD") if a.influx_user else None
    return from_influx(InfluxReader(a.influx_url, a.database, username=a.influx_user, password=pw), plant, start, end)


def _fmt_table(rows: list[list[str]]) -> str:
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows)


def cmd_publish(a: argparse.Namespace) -> int:
    from carbonedge.analytics.carbon import default_settings, load_settings
    from carbonedge.analytics.pact.model import load_pact_settings
    from carbonedge.analytics.pact.publish import compute_footprints, publish
    from carbonedge.errors import ConfigError
    from carbonedge.integrity import TrustStore

    st = _store(a)
    data = _load_data(a)
    settings = load_settings(Path(a.carbon)) if a.carbon else default_settings(data.plant)
    pact = load_pact_settings(Path(a.pact) if a.pact else None)
    if bool(a.archive) != bool(a.trust):
        raise ConfigError("integrity evidence needs both --archive (the collector's archive directory) and --trust (the gateways' keys)")
    comp = compute_footprints(data, settings, pact, st, archive=Path(a.archive) if a.archive else None,
                              trust=TrustStore.load(Path(a.trust)) if a.trust else None)
    rows = [["product", "declared (kg CO2e/unit)", "with supplier PCFs", "primary share", "coverage", "DQR t/g/tm"]]
    for c in comp:
        fp, dfp, doc = c["fp"], c["declared"], c["doc"]
        key = "total_kg_co2e_per_unit_market" if pact.electricity == "market" else "total_kg_co2e_per_unit_location"
        from carbonedge.analytics.pact.model import build_footprint

        declared_doc = build_footprint(dfp, **{**c["build"], "evidence": None})
        q = doc["pcf"]["dqi"]
        rows.append([fp["product"], f"{dfp[key]:,.2f} ({declared_doc['pcf']['primaryDataShare']} % primary)", f"{fp[key]:,.2f}",
                     f"{doc['pcf']['primaryDataShare']} %", f"{100 * c['coverage'].fraction:.2f} %",
                     f"{q['technologicalDQR']}/{q['geographicalDQR']}/{q['temporalDQR']}"])
    print(_fmt_table(rows))
    if a.dry_run:
        print(json.dumps([c["doc"] for c in comp], indent=2))
        return 0
    url = a.public_url or st.meta("public_url") or ""
    if not url and not a.no_notify and st.partners(notify_only=True):
        raise ConfigError("partners are to be notified, but this host's public URL is unknown: start `carbonedge pact serve` once "
                          "(it records it) or give --public-url")
    res = publish(st, comp, notify=not a.no_notify, self_url=url)
    for r in res:
        extra = f"; deprecated {', '.join(r['deprecated'])}" if r["deprecated"] else ""
        note = f"; PublishedEvent sent to {', '.join(r['notified'])}" if r["notified"] else ""
        print(f"{r['product']}: {r['state']} footprint {r['id']}{extra}{note}")
    failed = sorted({f for r in res for f in r["notify_failed"]})
    for f in failed:
        print(f"PublishedEvent NOT delivered to {f} (the footprints are published; the event log has it)", file=sys.stderr)
    return 1 if failed else 0


def cmd_fetch(a: argparse.Namespace) -> int:
    from carbonedge.analytics.pact.importer import fetch

    filters = {"productId": a.product_id} if a.product_id else None
    res = fetch(_store(a), a.url, a.client_id, _secret(a) or "", version=a.version, ca_file=a.ca_file, filters=filters)
    print(f"{a.url}: {res['listed']} footprint(s) listed (PACT {a.version}), {len(res['stored'])} valid and stored ({res['new']} new), "
          f"{len(res['invalid'])} invalid")
    for s in res["stored"]:
        integ = s.get("integrity")
        it = "" if integ is None else ("; integrity evidence verified" if integ["ok"] else f"; INTEGRITY EVIDENCE FAILED: {integ['error']}")
        print(f"  {s['pf_id']}  {s['product_name']} ({', '.join(s['product_ids'])}): {s['kg_co2e_per_unit']:.4f} kg CO2e per {s['unit']}, "
              f"primary {s['primary_data_share']:.1f} %, {s['status']}{it}")
    for pf_id, why in res["invalid"]:
        print(f"  INVALID {pf_id}: {why}")
    return 1 if res["invalid"] else 0


def cmd_list(a: argparse.Namespace) -> int:
    st = _store(a)
    for d in st.footprints():
        c = d["pcf"]
        print(f"{d['id']}  {d['status']:10s} {d['productNameCompany']}: {c['pcfExcludingBiogenicUptake']} kg CO2e per "
              f"{c['declaredUnitAmount']} {c['declaredUnitOfMeasurement']}, {c['referencePeriodStart']} .. {c['referencePeriodEnd']}, "
              f"primary {c.get('primaryDataShare', '?')} %")
    for s in st.purchased(current_only=False):
        state = "current" if not s["superseded_by"] else f"superseded by {s['superseded_by']}"
        print(f"purchased {s['pf_id']} from {s['supplier']}: {s['product_name']} {s['kg_co2e_per_unit']:.4f} kg CO2e/{s['unit']} ({state})")
    return 0


def cmd_cert(a: argparse.Namespace) -> int:
    from carbonedge.analytics.pact.tls import make_dev_certs

    p = make_dev_certs(Path(a.out), a.host or ["127.0.0.1", "localhost"], days=a.days)
    print(f"wrote {p['ca']} (give it to customers as --ca-file), {p['cert']} and {p['key']} (for --cert/--key); development use only")
    return 0


def purchased_settings(settings: Any, pact_path: str | None, db: str) -> Any:
    """``carbonedge report --pact-db``: carbon settings with the suppliers' PACT figures for mapped materials (printed)."""
    from carbonedge.analytics.pact.importer import current_by_product, settings_with_purchased
    from carbonedge.analytics.pact.model import load_pact_settings
    from carbonedge.analytics.pact.store import Store
    from carbonedge.errors import ConfigError

    if not pact_path:
        raise ConfigError("--pact-db needs --pact FILE, whose [[purchased]] entries say which material is which supplier product")
    if not Path(db).is_file():
        raise ConfigError(f"--pact-db {db}: no such database (fetch suppliers' footprints with `carbonedge pact fetch` first)")
    st = Store(Path(db))
    new, notes = settings_with_purchased(settings, load_pact_settings(Path(pact_path)), current_by_product(st))
    st.close()
    for n in notes:
        print(f"purchased input: {n}", flush=True)
    return new


def add_commands(sub: Any) -> None:
    """Register ``carbonedge pact``."""
    p = sub.add_parser("pact", help="PACT v3.0 product footprint exchange: serve, publish, fetch",
                       description="Publish the plant's metered product footprints to customers over the PACT Technical "
                       "Specifications v3.0 (WBCSD), and fetch suppliers' footprints as purchased-input factors.")
    ps = p.add_subparsers(dest="pact_cmd", required=True, metavar="ACTION")

    def db(x: argparse.ArgumentParser) -> None:
        x.add_argument("--db", default="pact.sqlite", help="the plant's PACT database (SQLite; default: pact.sqlite)")

    s = ps.add_parser("serve", help="run the PACT host (HTTPS)", description="Serve /auth/token, /3/footprints, /3/footprints/{id} "
                      "and /3/events from the database over HTTPS.")
    db(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=Number(int, min=1, max=65535), default=8443)
    s.add_argument("--cert", type=InputFile(), help="TLS certificate (PEM)")
    s.add_argument("--key", type=InputFile(), help="TLS private key (PEM)")
    s.add_argument("--insecure-http", action="store_true", help="development only: plain HTTP, allowed on a loopback address")
    s.add_argument("--public-url", help="this host's base URL as partners reach it (the source of its events)")
    s.add_argument("--token-ttl", type=Number(float, above=0), default=3600.0, help="access token lifetime in seconds (default: 3600)")
    s.add_argument("--max-body", type=Number(int, min=1), default=1 << 20, help="largest request body in bytes (default: 1 MiB)")
    s.set_defaults(func=cmd_serve)

    c = ps.add_parser("client", help="data recipients allowed to read the footprints")
    cs = c.add_subparsers(dest="client_cmd", required=True, metavar="ACTION")
    ca = cs.add_parser("add", help="add a client; prints its generated secret once")
    ca.add_argument("client_id")
    db(ca)
    ca.add_argument("--scope", action="append", choices=["footprint:list", "footprint:read"], help="repeat; default: both")
    ca.add_argument("--label", help="who the client is (customer name)")
    ca.add_argument("--secret-from-env", action="store_true", help=f"take the secret from ${SECRET_ENV} instead of generating one")
    ca.set_defaults(func=cmd_client_add, secret_env=SECRET_ENV)
    cl = cs.add_parser("list", help="list clients")
    db(cl)
    cl.set_defaults(func=cmd_client_list)
    cr = cs.add_parser("remove", help="remove a client and revoke its tokens")
    cr.add_argument("client_id")
    db(cr)
    cr.set_defaults(func=cmd_client_remove)

    pa = ps.add_parser("partner", help="recipients' hosts this plant answers and notifies (their credentials for this plant)")
    pas = pa.add_subparsers(dest="partner_cmd", required=True, metavar="ACTION")
    pad = pas.add_parser("add", help="register a recipient's host and the credentials it issued to this plant")
    pad.add_argument("url", help="the recipient host's base URL (https://...)")
    pad.add_argument("--client-id", required=True)
    pad.add_argument("--secret-env", default=SECRET_ENV, help=f"environment variable holding the secret (default: {SECRET_ENV})")
    pad.add_argument("--ca-file", type=InputFile(), help="CA certificate to trust for that host")
    pad.add_argument("--no-notify", action="store_true", help="answer its requests but send it no PublishedEvents")
    db(pad)
    pad.set_defaults(func=cmd_partner_add)

    pu = ps.add_parser("publish", help="compute the product footprints (as `report` does) and publish new or changed ones",
                       description="Compute product footprints from metered data exactly as `carbonedge report` does, with suppliers' "
                       "PACT figures for mapped materials, metering coverage, data-quality ratings and (with --archive) the integrity "
                       "evidence; store new or changed ones and notify partners.")
    db(pu)
    pu.add_argument("--csv", type=InputDir(), help="offline export directory (plant.json + <device>.csv)")
    pu.add_argument("--plant", type=InputFile("json"), help="plant model JSON (with --from/--to: read InfluxDB)")
    pu.add_argument("--from", dest="start", type=Time())
    pu.add_argument("--to", dest="end", type=Time())
    pu.add_argument("--influx-url", default="http://127.0.0.1:8086")
    pu.add_argument("--database", default="carbonedge")
    pu.add_argument("--influx-user", help="InfluxDB user (password from $CARBONEDGE_INFLUX_PASSWORD)")
    pu.add_argument("--carbon", type=InputFile("toml"), help="carbon settings TOML (as for `report`)")
    pu.add_argument("--pact", help="PACT settings TOML (company, product ids, purchased inputs)")
    pu.add_argument("--archive", help="collector archive directory (<state_dir>/archive) for the integrity evidence")
    pu.add_argument("--trust", type=InputFile(), help="trust file of the gateways' public keys")
    pu.add_argument("--public-url", help="this host's base URL (default: the one `pact serve` recorded)")
    pu.add_argument("--no-notify", action="store_true", help="do not send PublishedEvents")
    pu.add_argument("--dry-run", action="store_true", help="print the PACT footprints, store nothing")
    pu.set_defaults(func=cmd_publish)

    f = ps.add_parser("fetch", help="fetch a supplier's footprints (PACT v3.0 or v2.3) as purchased-input factors")
    f.add_argument("url", help="the supplier host's base URL (https://...)")
    f.add_argument("--client-id", required=True)
    f.add_argument("--secret-env", default=SECRET_ENV, help=f"environment variable holding the secret (default: {SECRET_ENV})")
    f.add_argument("--version", choices=["3.0", "2.3"], default="3.0", help="the supplier's PACT version (default: 3.0)")
    f.add_argument("--ca-file", type=InputFile(), help="CA certificate to trust for that host")
    f.add_argument("--product-id", action="append", help="only these productIds (repeat)")
    db(f)
    f.set_defaults(func=cmd_fetch)

    li = ps.add_parser("list", help="published and purchased footprints in the database")
    db(li)
    li.set_defaults(func=cmd_list)

    ce = ps.add_parser("cert", help="development CA and server certificate for a loopback host")
    ce.add_argument("--out", required=True, type=OutputDir())
    ce.add_argument("--host", action="append", help="host name or IP address (repeat; default: 127.0.0.1 and localhost)")
    ce.add_argument("--days", type=Number(int, min=1), default=30)
    ce.set_defaults(func=cmd_cert)
