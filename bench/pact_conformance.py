"""Run the official PACT conformance test cases (V3.0) against `carbonedge pact serve`.

    .venv/bin/python bench/pact_conformance.py [--service DIR] [--cases 1,2,3] [--json out.json]

What it does:

1. builds a plant's PACT database: a synthetic steel plant (two products, two campaigns) whose
   footprints `carbonedge pact publish` computes, a client for the tester, and the tester's
   callback host as a partner (credentials test_client_id / test_client_secret, as the service's FAQ says);
2. starts `carbonedge pact serve` over HTTPS on a free loopback port with a development CA;
3. runs the conformance service's own test-run worker, test cases, schemas and callback handler
   (WBCSD pact-conformance-service, MIT; `npm ci` once into ~/.cache/carbonedge) through
   bench/pact_conformance_runner.ts, which adds the callback listener the service's CLI lacks;
4. prints one line per test case and, last, ``passed=… failed=… skipped=…`` over the mandatory
   cases; exits 1 when a mandatory case fails.

The service's source is taken from --service, $PACT_CONFORMANCE_SERVICE, or the conformance service's checkout beside the repository (shared/tools/pact-conformance-service)
next to the repository (a checkout of github.com/wbcsd/pact-conformance-service, commit 839bfe8).
Needs Node.js >= 20 and npm, and the npm registry for the first `npm ci`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

CARBON = """
[carbon]
country = "CN"
installation = "Meltshop 2"
process_emissions = { eaf = "ipcc2006.process.eaf" }
[[products]]
name = "S235 slab"
unit = "t"
cn_code = "7207 12 10"
periods = [["2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z"]]
[[products]]
name = "S355 slab"
unit = "t"
cn_code = "7207 19 80"
periods = [["2026-01-06T00:00:00Z", "2026-01-07T00:00:00Z"]]
"""
PACT = """
company_name = "Meltshop 2 Steel Co."
company_ids = ["urn:uuid:1b0c1a3e-3f7e-4a57-9d5c-0a1c9f1e2d3b"]
meter_accuracy_class = "0.5S"
[[products]]
name = "S235 slab"
product_ids = ["urn:gtin:4012345000016"]
classifications = ["urn:pact:productclassification:cn:72071210"]
[[products]]
name = "S355 slab"
product_ids = ["urn:gtin:4012345000023"]
classifications = ["urn:pact:productclassification:cn:72071980"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_dir(arg: str | None) -> Path:
    d = Path(arg or os.environ.get("PACT_CONFORMANCE_SERVICE") or REPO.parent / "shared" / "tools" / "pact-conformance-service")
    if not (d / "src" / "services" / "test-run-worker.ts").is_file():
        sys.exit(f"pact_conformance: no PACT conformance service source at {d}; clone github.com/wbcsd/pact-conformance-service "
                 "(commit 839bfe8) and pass --service DIR")
    return d


def prepare(src: Path) -> Path:
    """A copy of the service with its npm dependencies installed (cached by package-lock.json and source digest)."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        sys.exit("pact_conformance: Node.js (>= 20) and npm are needed to run the conformance service")
    h = hashlib.sha256()
    for f in sorted(src.rglob("*")):
        if f.is_file() and "node_modules" not in f.parts:
            h.update(str(f.relative_to(src)).encode())
            h.update(f.read_bytes())
    dest = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "carbonedge" / f"pact-conformance-{h.hexdigest()[:12]}"
    if not (dest / "node_modules" / ".bin" / "ts-node").exists():
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("node_modules"))
        print(f"installing the conformance service's npm dependencies into {dest} (once) ...", flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=tmp, check=True)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    shutil.copy(REPO / "bench" / "pact_conformance_runner.ts", dest / "src" / "scripts" / "pact_conformance_runner.ts")
    return dest


def build_host(work: Path, callback_base: str) -> tuple[str, str]:
    """Plant data, footprints, a client and the tester as partner; returns (client id, secret)."""
    from carbon_synth import make_plant

    from carbonedge.analytics.carbon import from_csv_dir, load_settings
    from carbonedge.analytics.pact.model import load_pact_settings
    from carbonedge.analytics.pact.publish import compute_footprints, publish
    from carbonedge.analytics.pact.store import Store

    make_plant(work / "steel", days=2, seed=11)
    (work / "carbon.toml").write_text(CARBON)
    (work / "pact.toml").write_text(PACT)
    st = Store(work / "pact.sqlite")
    comp = compute_footprints(from_csv_dir(work / "steel"), load_settings(work / "carbon.toml"), load_pact_settings(work / "pact.toml"), st)
    publish(st, comp, notify=False)
    secret = secrets.token_urlsafe(24)
    st.add_client("pact-conformance", secret, label="PACT conformance service")
    st.add_partner(callback_base, "test_client_id", "test_client_secret", notify=False)
    st.close()
    return "pact-conformance", secret


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--service", help="PACT conformance service source directory")
    ap.add_argument("--cases", help="comma-separated test case numbers (default: all)")
    ap.add_argument("--json", help="write every result to this JSON file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    svc = prepare(service_dir(a.service))
    work = Path(tempfile.mkdtemp(prefix="pact-conformance-"))
    host_port, cb_port = free_port(), free_port()
    cb_base = f"http://127.0.0.1:{cb_port}"
    from carbonedge.analytics.pact.tls import make_dev_certs

    certs = make_dev_certs(work / "certs", ["127.0.0.1", "localhost"])
    client_id, secret = build_host(work, cb_base)
    log = open(work / "host.log", "w")
    host = subprocess.Popen([str(REPO / ".venv" / "bin" / "carbonedge") if (REPO / ".venv" / "bin" / "carbonedge").exists() else "carbonedge",
                             "pact", "serve", "--db", str(work / "pact.sqlite"), "--port", str(host_port),
                             "--cert", str(certs["cert"]), "--key", str(certs["key"])], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", host_port), timeout=1).close()
                break
            except OSError:
                if host.poll() is not None or time.time() > deadline:
                    print((work / "host.log").read_text())
                    sys.exit("pact_conformance: the host did not start")
                time.sleep(0.2)
        env = {**os.environ, "NODE_ENV": "development", "LOG_OUTPUT": "console", "LOG_LEVEL": "warn", "PORT": str(cb_port),
               "CONFORMANCE_API": cb_base, "DB_CONNECTION_STRING": "postgres://unused@127.0.0.1/unused",
               "JWT_SECRET": secrets.token_hex(16), "NODE_EXTRA_CA_CERTS": str(certs["ca"]), "TESTCASE_TIMEOUT": "15000",
               "TS_NODE_TRANSPILE_ONLY": "true"}
        cmd = ["npx", "ts-node", "src/scripts/pact_conformance_runner.ts", "--baseUrl", f"https://127.0.0.1:{host_port}",
               "--clientId", client_id, "--clientSecret", secret, "--version", "V3.0", "--organizationName", "carbonedge"]
        if a.cases:
            cmd += ["--testCases", a.cases]
        t0 = time.time()
        p = subprocess.run(cmd, cwd=svc, env=env, capture_output=True, text=True, timeout=900)
        line = next((x for x in p.stdout.splitlines() if x.startswith("CONFORMANCE_RESULTS ")), None)
        if line is None:
            print(p.stdout[-4000:], p.stderr[-4000:])
            sys.exit(f"pact_conformance: the conformance runner failed (exit {p.returncode})")
        res = json.loads(line.split(" ", 1)[1])
    finally:
        host.send_signal(signal.SIGTERM)
        try:
            host.wait(10)
        except subprocess.TimeoutExpired:
            host.kill()
        log.close()
    mand = [r for r in res["results"] if r["mandatory"]]
    for r in res["results"]:
        mark = {"SUCCESS": "pass", "FAILURE": "FAIL", "PENDING": "skip"}[r["status"]]
        extra = "" if r["status"] == "SUCCESS" else "  " + textwrap.shorten(r["errorMessage"] or "no callback received", 240)
        print(f"{mark:4s} {'M' if r['mandatory'] else ' '} {r['name']}{extra}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work directory: {work}")
    passed = sum(r["status"] == "SUCCESS" for r in mand)
    failed = sum(r["status"] == "FAILURE" for r in mand)
    skipped = sum(r["status"] == "PENDING" for r in mand)
    print(f"V3.0 mandatory test cases against carbonedge pact serve ({time.time() - t0:.0f} s; non-mandatory: "
          f"{sum(r['status'] == 'SUCCESS' for r in res['results'] if not r['mandatory'])} passed of "
          f"{sum(not r['mandatory'] for r in res['results'])})")
    print(f"passed={passed} failed={failed} skipped={skipped}")
    return 1 if failed or skipped or not mand else 0


if __name__ == "__main__":
    sys.exit(main())
