"""The kernel's counter arithmetic: one rule for rollovers, resets, jumps and readings out of order,
the same reading by reading (gateway, monitor) and on arrays (analytics)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonedge import energy, profiles
from carbonedge.energy import OUT_OF_ORDER, RESET, ROLLOVER, CounterSpec, CounterState, increments

T0 = 1_767_571_200_000
MIN = 60_000
M32 = 42_949_672.96  # 2**32 x 0.01 kWh (generic-em-u32)


def _stream(t, v, spec):
    st = CounterState.start(v[0], t[0])
    out = [energy.step(st, float(x), int(ts), spec) for ts, x in zip(t[1:], v[1:], strict=True)]
    return [s.delta for s in out], [s.flag for s in out], st


def test_rollover_of_an_unknown_register_is_found_among_the_profiles_registers() -> None:
    t = T0 + MIN * np.arange(6)
    v = np.array([M32 - 30.0, M32 - 20.0, M32 - 10.0, 2.0, 12.0, 22.0])
    inc = increments(t, v, CounterSpec.for_quantity("active_energy_import"))
    assert inc.delta.tolist() == pytest.approx([10.0, 10.0, 12.0, 10.0, 10.0])
    assert inc.count(ROLLOVER) == 1 and inc.events[0][1].kind == "counter_rollover"
    assert M32 in energy.profile_moduli("active_energy_import")
    # The meter's own profile gives the exact modulus.
    assert CounterSpec.for_quantity("active_energy_import", profile="generic-em-u32").modulus == pytest.approx(M32)


def test_a_reset_counts_the_restart_value_when_plausible_and_zero_otherwise() -> None:
    t = T0 + MIN * np.arange(5)
    inc = increments(t, np.array([1000.0, 1010.0, 1020.0, 4.0, 14.0]))  # restarted from zero a minute ago
    assert inc.delta.tolist() == [10.0, 10.0, 4.0, 10.0] and inc.count(RESET) == 1
    inc = increments(t, np.array([1000.0, 1010.0, 1020.0, 400.0, 410.0]))  # 400 in a minute: far above 10 x the rate
    assert inc.delta.tolist() == [10.0, 10.0, 0.0, 10.0]
    assert "unknown" in inc.events[0][1].reason


def test_a_wrap_far_too_large_for_the_elapsed_time_is_a_reset_not_a_rollover() -> None:
    t = T0 + MIN * np.arange(4)
    v = np.array([M32 - 5000.0, M32 - 4990.0, 3.0, 13.0])  # a rollover would mean 4993 kWh in a minute
    inc = increments(t, v, CounterSpec.for_quantity("active_energy_import"))
    assert inc.count(ROLLOVER) == 0 and inc.count(RESET) == 1 and inc.total == pytest.approx(10.0 + 3.0 + 10.0)


def test_readings_out_of_order_are_not_counted_twice() -> None:
    # A gateway clock stepped back 10 min: in time order the old and new readings interleave.
    t = T0 + MIN * np.arange(8)
    v = 50_000.0 + np.array([100.0, 101.0, 112.0, 102.0, 113.0, 103.0, 114.0, 115.0])
    inc = increments(t, v)
    assert inc.total == pytest.approx(15.0)
    assert inc.count(OUT_OF_ORDER) == 2 and all(e.detail["action"] == "out_of_order" for _, e in inc.events)


def test_a_swapped_meter_with_a_close_total_becomes_a_reset_after_three_readings() -> None:
    t = T0 + MIN * np.arange(7)
    v = np.array([1000.0, 1010.0, 900.0, 910.0, 920.0, 930.0, 940.0])
    inc = increments(t, v)
    assert inc.delta.tolist() == [10.0, 0.0, 0.0, 20.0, 10.0, 10.0]
    assert [e.kind for _, e in inc.events] == ["implausible", "implausible", "counter_reset"]


def test_an_implausible_jump_with_a_rated_limit_is_flagged_and_recovers() -> None:
    t = T0 + MIN * np.arange(4)
    inc = increments(t, np.array([5000.0, 5010.0, 5010.0 + 1e6, 5020.0]), CounterSpec(max_per_hour=1000.0))
    assert inc.delta.tolist() == [10.0, 0.0, 10.0]


def test_the_vectorised_path_continues_the_streaming_state() -> None:
    t = T0 + MIN * np.arange(5)
    inc = increments(t, np.array([1.0, 2.0, 3.5, 4.0, 6.0]))
    assert inc.state is not None and inc.state.raw == 6.0 and inc.state.ts == int(t[-1]) and inc.state.peak_rate == pytest.approx(120.0)  # 2 kWh in a minute


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.one_of(st.floats(0, 50), st.sampled_from([-1.0, -2.0, -3.0, 1e5]))), min_size=1, max_size=80),
       st.sampled_from([None, 3000.0]), st.booleans())
def test_streaming_and_vectorised_give_identical_increments(steps, rated, known) -> None:
    """Any mix of increases, gaps, resets (-1), readings out of order (-2), rollovers (-3) and spikes:
    reading by reading and on arrays the increments are the same floats."""
    mod = 65536.0 * 0.01
    spec = CounterSpec(modulus=mod if known else None, moduli=() if known else (mod,), max_per_hour=rated)
    raw, ts = mod - 40.0, T0
    t, v = [ts], [raw]
    for gap, s in steps:
        ts += MIN * (gap + 1)
        if s == -1.0:
            raw = 0.25 * raw
            x = raw
        elif s == -2.0:
            x = raw - 0.1 * raw  # an old reading, stamped later
        elif s == -3.0:
            raw = (raw + 7.5) % mod
            x = raw
        elif s == 1e5:
            x = raw + 1e5  # a torn read
        else:
            raw = (raw + s) % mod
            x = raw
        t.append(ts)
        v.append(x)
    ta, va = np.array(t, dtype=np.int64), np.array(v)
    inc = increments(ta, va, spec)
    deltas, flags, st_end = _stream(t, v, spec)
    assert inc.delta.tolist() == deltas
    assert inc.flags.tolist() == flags
    assert inc.state is not None and (inc.state.raw, inc.state.offset, inc.state.peak_rate) == (st_end.raw, st_end.offset, st_end.peak_rate)
    assert (inc.delta >= 0).all()


def test_profile_moduli_only_hold_counter_registers() -> None:
    for m in energy.profile_moduli():
        assert m > 0
    assert energy.profile_moduli("production_mass") == (4_294_967.296,)
    assert profiles.counter_modulus(profiles.PointSpec("x", 0, "float32")) is None


# --------------------------------------------------------------------------- import contract

ROOT = Path(__file__).resolve().parents[1]
#: Folder in the repository -> the package it installs as (setup.py maps each under the carbonedge namespace).
PARTS = {"edge": "edge", "collector": "collector", "analytics": "analytics", "simulators": "simulators", "app": "app"}
PROCESS_PACKAGES = {"edge", "collector", "analytics", "simulators"}
OLD_TOP_LEVEL = PROCESS_PACKAGES | {"app"}


def _imported_parts(path: Path) -> tuple[set[str], set[str]]:
    """(parts of carbonedge imported, e.g. {"edge"}; old top-level names imported without the namespace)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            if node.module == "carbonedge":
                names += [f"carbonedge.{a.name}" for a in node.names]
    parts = {n.split(".")[1] for n in names if n.startswith("carbonedge.") and n.split(".")[1] in PARTS}
    old = {n.split(".")[0] for n in names} & OLD_TOP_LEVEL
    return parts, old


def _sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_kernel_imports_no_process_package_nor_the_shell() -> None:
    kernel = [p for p in _sources("carbonedge")]
    assert any(p.name == "energy.py" for p in kernel)
    bad = {p.relative_to(ROOT).as_posix(): sorted(_imported_parts(p)[0]) for p in kernel}
    assert {k: v for k, v in bad.items() if v} == {}


def test_process_packages_never_import_one_another_nor_the_shell() -> None:
    bad = {}
    for part in PROCESS_PACKAGES:
        for p in _sources(part):
            other = _imported_parts(p)[0] - {part}
            if other:
                bad[p.relative_to(ROOT).as_posix()] = sorted(other)
    assert bad == {}


def test_nothing_imports_the_old_top_level_names() -> None:
    files = [p for folder in ("carbonedge", *PARTS, "tests", "bench") for p in _sources(folder)]
    bad = {p.relative_to(ROOT).as_posix(): sorted(_imported_parts(p)[1]) for p in files}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_import_contract_test_catches_a_violation(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from carbonedge.analytics.influx import InfluxReader\n    import carbonedge.edge.counters\n"
                 "    from carbonedge import app\n    import simulators\n")
    assert _imported_parts(f) == ({"analytics", "edge", "app"}, {"simulators"})


def test_the_streaming_form_runs_without_numpy() -> None:
    """The gateway's counter arithmetic must not pull numpy onto a gateway."""
    import subprocess
    import sys

    code = "import sys, carbonedge.edge.counters, carbonedge.energy; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip()
    assert out == "False"
