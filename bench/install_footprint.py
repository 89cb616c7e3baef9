"""Install footprint of a gateway: fresh venvs with ``.[edge]`` and ``.[all]``, their size, and the gateway's RSS.

    .venv/bin/python bench/install_footprint.py [--seconds 60] [--before /path/to/other/venv]

1. Creates fresh virtual environments (no system site-packages) in a temporary directory and installs this
   checkout (not editable) with ``pip install '.[edge]'`` and ``pip install '.[all]'`` through pip's configured
   index; measures each venv's size on disk beside an empty venv (pip alone).
2. In the ``edge`` venv: ``carbonedge edge --help`` runs, and the gateway's modules import without numpy,
   scipy, scikit-learn, matplotlib, openpyxl, jsonschema or starlette (and none of them is installed).
3. Starts Mosquitto and a simulated steel plant (wall clock, 1 s polls), then runs the gateway from each venv in
   turn for ``--seconds`` and samples its resident memory (VmRSS, peak VmHWM from /proc). ``--before VENV``
   adds a run of the gateway from another installation (e.g. an older checkout's .venv) for comparison.

The last line prints the figures; exit status 1 when the edge venv holds or imports a heavy package.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "scipy", "sklearn", "matplotlib", "openpyxl", "jsonschema", "starlette", "uvicorn", "holidays")

#: Imported by the gateway: the command line and every module a running gateway loads (drivers, Sparkplug, outbox).
GATEWAY_IMPORTS = """
import sys
from carbonedge.app import cli
cli.build_parser(lean=True)
import carbonedge.edge.agent, carbonedge.edge.config, carbonedge.edge.publisher, carbonedge.edge.outbox
import carbonedge.edge.drivers.modbus, carbonedge.edge.drivers.opcua, carbonedge.edge.sparkplug.sparkplug_b_pb2
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(%r))
print(",".join(heavy))
""" % (HEAVY,)


def du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = Path(root) / f
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def clean_source(where: Path) -> Path:
    """A copy of the checkout without build/, .venv or caches: setuptools' build/ keeps files deleted since."""
    src = where / "src"
    if not src.exists():
        shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                                                 ".hypothesis", "demo-out", ".cache"))
    return src


def make_venv(where: Path, extra: str | None) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    if extra is not None:
        src = clean_source(where.parent)
        r = subprocess.run([str(where / "bin" / "python"), "-m", "pip", "install", "-q", f"{src}[{extra}]"], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"pip install .[{extra}] failed:\n{r.stderr[-2000:]}")
    return time.monotonic() - t0


def installed(venv: Path) -> set[str]:
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True).stdout
    return {d["name"].lower().replace("_", "-") for d in json.loads(out)}


def vm(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def run_gateway(carbonedge: Path, config: Path, mqtt_port: int, data_dir: Path, seconds: float) -> dict[str, float]:
    p = subprocess.Popen([str(carbonedge), "edge", "--config", str(config), "--mqtt-port", str(mqtt_port), "--data-dir", str(data_dir)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples = []
    try:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            time.sleep(1.0)
            if p.poll() is not None:
                sys.exit(f"{carbonedge} edge stopped: {p.stderr.read().decode()[-1000:] if p.stderr else ''}")
            samples.append(vm(p.pid))
        rss, hwm = samples[-1]
        modules = Path(f"/proc/{p.pid}/maps").read_text()
        numpy_mapped = "numpy" in modules
    finally:
        p.terminate()
        p.wait(30)
    return {"rss_mb": rss / 1024, "peak_mb": hwm / 1024, "numpy_mapped": float(numpy_mapped)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long each gateway runs (default 60)")
    ap.add_argument("--before", type=Path, help="another installation's venv whose gateway to measure too")
    ap.add_argument("--keep", type=Path, help="build the venvs here and keep them (default: a temporary directory)")
    a = ap.parse_args()

    from carbonedge.app.services import Mosquitto, free_port

    work = a.keep or Path(tempfile.mkdtemp(prefix="carbonedge-footprint-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {}
    try:
        venvs = {"empty": None, "edge": "edge", "all": "all"}
        sizes = {}
        for name, extra in venvs.items():
            v = work / f"venv-{name}"
            if not (v / "bin" / "python").exists():
                secs = make_venv(v, extra)
                print(f"venv {name}: installed in {secs:.0f} s", flush=True)
            sizes[name] = du(v) / 1e6
        edge_pkgs = installed(work / "venv-edge")
        heavy_installed = sorted(p for p in edge_pkgs if p in {"numpy", "scipy", "scikit-learn", "matplotlib", "openpyxl", "jsonschema",
                                                                "starlette", "uvicorn", "holidays"})
        r = subprocess.run([str(work / "venv-edge" / "bin" / "carbonedge"), "edge", "--help"], capture_output=True, text=True)
        help_ok = r.returncode == 0 and "--config" in r.stdout
        r = subprocess.run([str(work / "venv-edge" / "bin" / "python"), "-c", GATEWAY_IMPORTS], capture_output=True, text=True, cwd=work)
        heavy_imported = r.stdout.strip() if r.returncode == 0 else f"import failed: {r.stderr.strip()[-300:]}"
        print(f"edge venv: {len(edge_pkgs)} distributions; heavy ones installed: {heavy_installed or 'none'}; "
              f"`carbonedge edge --help` {'ok' if help_ok else 'FAILED'}; heavy modules imported by the gateway: {heavy_imported or 'none'}", flush=True)

        # A real gateway run against a simulated plant and a broker.
        mqtt = Mosquitto("mosquitto-footprint", free_port(), work / "mosquitto").start()
        sim_out = work / "sim"
        sim = subprocess.Popen([sys.executable, "-m", "carbonedge.app.cli", "sim", "--plant", "steel", "--poll-interval", "1", "--out", str(sim_out),
                                "--duration", "2h"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            t0 = time.monotonic()
            while not (sim_out / "ready").exists():
                if sim.poll() is not None or time.monotonic() - t0 > 120:
                    sys.exit("the simulator did not start")
                time.sleep(0.2)
            config = sim_out / "gateway.toml"
            runs = {"edge": work / "venv-edge" / "bin" / "carbonedge", "all": work / "venv-all" / "bin" / "carbonedge"}
            if a.before:
                runs["before"] = a.before / "bin" / "carbonedge"
            for name, exe in runs.items():
                shutil.rmtree(work / f"outbox-{name}", ignore_errors=True)
                res = run_gateway(exe, config, mqtt.port, work / f"outbox-{name}", a.seconds)
                results[name] = res
                print(f"gateway from venv {name}: RSS {res['rss_mb']:.1f} MB after {a.seconds:g} s, peak {res['peak_mb']:.1f} MB, "
                      f"numpy mapped: {'yes' if res['numpy_mapped'] else 'no'}", flush=True)
        finally:
            sim.terminate()
            sim.wait(30)
            mqtt.stop()
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    ok = not heavy_installed and not heavy_imported and help_ok
    edge_rss = results["edge"]["peak_mb"]  # type: ignore[index]
    all_rss = results["all"]["peak_mb"]  # type: ignore[index]
    before = f" before {results['before']['peak_mb']:.1f} MB" if "before" in results else ""  # type: ignore[index]
    print(f"installed size: edge {sizes['edge'] - sizes['empty']:.0f} MB, all {sizes['all'] - sizes['empty']:.0f} MB (beyond an empty venv of "
          f"{sizes['empty']:.0f} MB); gateway peak RSS: edge {edge_rss:.1f} MB, all {all_rss:.1f} MB{before}; "
          f"edge install without heavy packages: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
