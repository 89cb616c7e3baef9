"""A gateway installs and runs with only ``pip install 'carbonedge[edge]'``: no numpy, scipy, scikit-learn, matplotlib.

The default suite checks the import closure cheaply: a subprocess where every distribution outside the
requirements of ``carbonedge[edge]`` cannot be imported (as on a gateway installed with that extra) runs
``carbonedge edge --help``, the full ``carbonedge --help``, ``config check`` of a gateway file and a short real
gateway run, and asks a command of another extra for its one-line hint. The slow test builds a fresh venv
(no system site-packages) and installs ``.[edge]`` from a local wheelhouse with ``--no-index``, as on a
gateway without internet access.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
HEAVY = {"numpy", "scipy", "sklearn", "matplotlib", "openpyxl", "jsonschema", "starlette", "uvicorn", "holidays", "requests", "msgspec"}


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def edge_closure(extra: str = "edge") -> set[str]:
    """Distributions that ``pip install 'carbonedge[EXTRA]'`` installs: carbonedge's core and that extra's requirements, recursively."""
    todo: list[tuple[str, frozenset[str]]] = [("carbonedge", frozenset({extra}))]
    seen: set[str] = set()
    while todo:
        name, extras = todo.pop()
        key = _norm(name)
        if key in seen and not extras:
            continue
        seen.add(key)
        try:
            reqs = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for text in reqs:
            r = Requirement(text)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if r.marker is None or any(r.marker.evaluate(env) for env in envs):
                todo.append((r.name, frozenset(r.extras)))
    return seen


def _blocked_modules(extra: str = "edge") -> set[str]:
    allowed = edge_closure(extra)
    blocked = set()
    for module, dists in packages_distributions().items():
        if not any(_norm(d) in allowed for d in dists):
            blocked.add(module)
    return blocked


def test_the_edge_extra_holds_no_heavy_distribution():
    closure = edge_closure()
    assert {"pymodbus", "paho-mqtt", "pydantic", "cryptography", "asyncua"} <= closure
    heavy = closure & {"numpy", "scipy", "scikit-learn", "matplotlib", "openpyxl", "jsonschema", "starlette", "uvicorn", "holidays"}
    assert not heavy, f"carbonedg[edge] pulls {heavy}"


_BLOCKER = """
import importlib.abc, sys
BLOCKED = %r

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in this extra)", name=name)
        return None

sys.meta_path.insert(0, Block())
from carbonedge.app import cli

def run(*argv):
    try:
        return cli.main(list(argv))
    except SystemExit as e:
        return e.code
"""


@pytest.mark.parametrize(("extra", "command"), [("collector", "collect"), ("analytics", "analyze"), ("sim", "sim")])
def test_every_extra_builds_the_whole_command_line(extra, command):
    """A collector or analytics server installed with its extra only: every command's help works."""
    script = _BLOCKER % (sorted(_blocked_modules(extra)),) + f"assert run('--help') == 0\nassert run({command!r}, '--help') == 0\n"
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_a_gateway_runs_with_only_the_edge_extra(tmp_path):
    blocked = _blocked_modules()
    assert HEAVY - {"requests", "msgspec"} <= blocked | {"sklearn"}  # the walk really blocks the heavy ones
    gw = tmp_path / "gw.toml"
    gw.write_text(f'[gateway]\nsite = "s1"\nid = "gw1"\npoll_interval_s = 60\ndata_dir = "{tmp_path / "outbox"}"\n'
                  '[mqtt]\nport = 9\nreconnect_max_s = 1\n'
                  '[[devices]]\nid = "m1"\nprofile = "eastron-sdm630"\ndriver = "simulated"\n')
    script = _BLOCKER % (sorted(blocked),) + textwrap.dedent(f"""
        assert run("edge", "--help") == 0
        assert run("--help") == 0
        assert run("config", "check", {str(gw)!r}) == 0
        # A short real run: two minutes of plant time at 60x, one simulated meter, polled every 60 s; no broker.
        assert run("edge", "--config", {str(gw)!r}, "--clock", "start=2026-01-05T00:00:00Z,speed=60",
                   "--until", "2026-01-05T00:02:00Z", "--stats-file", {str(tmp_path / "stats.json")!r}) == 0
        import carbonedge.edge.drivers.modbus, carbonedge.edge.drivers.opcua, carbonedge.edge.sparkplug.sparkplug_b_pb2
        heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({sorted(HEAVY)!r}))
        print("HEAVY", heavy)
        assert not heavy, heavy
        # A command of another extra says what to install, in one line.
        code = run("analyze", "sec", "--plant", {str(tmp_path / "plant.json")!r}, "--start", "2026-01-05", "--end", "2026-01-06")
        assert code == 2, code
    """)
    (tmp_path / "plant.json").write_text('{"site": "s1", "sec_unit": "kWh/t", "processes": {"p": {"meters": ["m1"]}}}')
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "HEAVY []" in r.stdout
    hint = [ln for ln in r.stderr.splitlines() if "carbonedge analyze:" in ln]
    assert len(hint) == 1 and "pip install 'carbonedge[analytics]'" in hint[0], r.stderr[-2000:]
    import json

    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["outbox_batches"] >= 2 and stats["outbox_readings"] > 0, stats  # it polled and stored cycles in its outbox


@pytest.mark.slow
def test_fresh_venv_installs_the_edge_extra_offline(tmp_path):
    """``pip install --no-index --find-links WHEELHOUSE '.[edge]'`` into a venv without system site-packages.

    The wheelhouse is ``$CARBONEDGE_WHEELHOUSE`` when set (a directory of wheels, as copied to a gateway without
    internet); otherwise it is filled here once with ``pip download`` from the configured index."""
    import shutil

    src = tmp_path / "src"  # a clean copy: an old build/ directory in the checkout would carry deleted files along
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                                             ".hypothesis", "demo-out", ".cache"))
    wheels = Path(os.environ.get("CARBONEDGE_WHEELHOUSE", tmp_path / "wheels"))
    if "CARBONEDGE_WHEELHOUSE" not in os.environ:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels), f"{src}[edge]", "setuptools>=68"],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            pytest.skip(f"no package index to fill the wheelhouse from: {r.stderr.strip()[-300:]}")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    # pip itself from this interpreter's pip, run against the new venv (no network, no system site-packages).
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-index", "--find-links", str(wheels),
                        f"{src}[edge]"], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([str(venv / "bin" / "carbonedge"), "edge", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--config" in r.stdout, r.stderr
    check = ("import sys, carbonedge.edge.agent, carbonedge.edge.drivers.modbus, carbonedge.edge.drivers.opcua\n"
             "from carbonedge.app import cli\ncli.build_parser()\n"
             "import importlib.util as u\nprint(sorted(m for m in %r if u.find_spec(m)), sorted(m for m in %r if m in sys.modules))"
             % (sorted(HEAVY), sorted(HEAVY)))
    r = subprocess.run([str(py), "-c", check], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "[] []", r.stdout + r.stderr
