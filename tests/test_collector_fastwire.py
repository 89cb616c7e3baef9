"""Differential test: the collector's msgspec fast path against the pydantic wire contract.

Whatever the fast path accepts, the wire models must accept with the same content (the same
InfluxDB lines, readings and events); whatever a gateway's wire models produce, the fast path must
accept (else plants would silently run on the slow path). Rejections are always named by the
wire models, so a payload the fast path declines costs only speed.
"""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from carbonedge import integrity, quantities, wire
from carbonedge.collector.fastwire import Batch as FastBatch
from carbonedge.collector.lineprotocol import batch_points
from carbonedge.collector.validate import Rejected, Validator, _Undecided

NOW = 1_767_571_200_000
QTYS = sorted(quantities.QUANTITIES)
V = Validator(max_future_s=1e12)

def mostly(valid: st.SearchStrategy, weird: st.SearchStrategy, one_in: int = 30) -> st.SearchStrategy:  # type: ignore[type-arg]
    """Usually ``valid``, one time in ``one_in`` ``weird``: each payload then has few faults, so that the fast
    path accepts many payloads and a wrong acceptance has a chance to show."""
    return st.integers(1, one_in).flatmap(lambda n: weird if n == 1 else valid)


ident_ok = st.sampled_from(["m0", "m1", "eaf-meter", "A", "0", "x" * 64, "a.b_c-d", "Z9"])
weird_str = st.sampled_from(["", "m 0", "m0\n", "a/b", "\u00e9", "-x", "a" * 65, "x,y", "m\u00a0", "\ud800", "_a", "\n"])
ident = mostly(ident_ok, st.one_of(weird_str, st.text(max_size=4)))
tag_key = mostly(st.sampled_from(["area", "process", "asset", "a", "line_2", "x" * 32]),
                 st.sampled_from(["site", "device", "gateway", "Area", "1a", "a\n", "", "x" * 33, "a-b"]))
tag_value = mostly(st.sampled_from(["meltshop", "eaf", "A", "0", "hall:3", "x" * 64, "a.b-c_d"]), st.one_of(weird_str, st.text(max_size=3)))
ts_ok = st.integers(NOW - 10**6, NOW + 10**6)
ts = mostly(ts_ok, st.one_of(
    st.sampled_from([946_684_799_999, 946_684_800_000, 4_102_444_799_999, 4_102_444_800_000, 0, -1, 2**63, 2**70, "1767571200000", True]),
    st.floats(allow_nan=False, allow_infinity=False)))
number = mostly(
    st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.floats(allow_nan=False, allow_infinity=False, width=32),
              st.integers(-1000, 1000)),
    st.one_of(st.floats(), st.integers(-(2**80), 2**80),
              st.sampled_from([-0.0, 1e16, 1e-7, 5e-324, 1.7976931348623157e308, 2**53 + 1, float("inf"), float("nan"), True, "1.5"])),
    one_in=10)
MISSING = object()
HEX = "0123456789abcdef"


@st.composite
def value_obj(draw: st.DrawFn, q: str) -> object:
    unit = quantities.QUANTITIES[q].unit if q in quantities.QUANTITIES else "kW"
    d: dict[str, object] = {}
    v = draw(mostly(number, st.sampled_from([None, MISSING]), one_in=6))
    if v is not MISSING:
        d["v"] = v
    u = draw(mostly(st.just(unit), st.sampled_from(["W", "", MISSING, "KW"])))
    if u is not MISSING:
        d["u"] = u
    qual = draw(mostly(st.sampled_from(["good", "good", "good", "bad", "uncertain", MISSING]), st.sampled_from(["meh", None, "Good"])))
    if qual is not MISSING:
        d["q"] = qual
    if draw(st.integers(0, 30)) == 0:
        d["x"] = 1
    if draw(st.integers(0, 40)) == 0:
        return [1.0, unit]
    return d


@st.composite
def device_obj(draw: st.DrawFn) -> dict[str, object]:
    d: dict[str, object] = {"device": draw(ident), "ts": draw(ts)}
    if draw(st.booleans()):
        d["status"] = draw(mostly(st.sampled_from(["ok", "partial", "timeout", "error"]), st.sampled_from(["down", None, "OK"])))
    if draw(st.integers(0, 3)) == 0:
        d["error"] = draw(mostly(st.one_of(st.none(), st.text(max_size=20), st.just("e" * 500)), st.sampled_from(["e" * 501, 5, "\ud800"])))
    if draw(st.booleans()):
        d["tags"] = draw(st.dictionaries(tag_key, tag_value, max_size=3))
    names = draw(st.lists(mostly(st.sampled_from(QTYS), st.sampled_from(["reactive_powr", "", "Active_power", "seq"])),
                          max_size=5, unique=True))
    d["values"] = {q: draw(value_obj(q)) for q in names}
    if draw(st.integers(0, 30)) == 0:
        d["extra"] = True
    return d


detail_value = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=8))


@st.composite
def event_obj(draw: st.DrawFn) -> dict[str, object]:
    e: dict[str, object] = {"kind": draw(mostly(st.sampled_from(["gap", "overflow", "counter_reset", "counter_rollover", "implausible", "clock"]),
                                                st.sampled_from(["bogus", "", None]))),
                            "ts": draw(ts)}
    if draw(st.booleans()):
        e["device"] = draw(st.one_of(ident, st.none()))
    if draw(st.booleans()):
        e["quantity"] = draw(st.one_of(st.sampled_from(QTYS), st.none(), st.text(max_size=5)))
    if draw(st.booleans()):
        e["detail"] = draw(st.dictionaries(st.text(max_size=6), mostly(detail_value, st.sampled_from([[1], {"a": 1}, float("nan")])), max_size=4))
    return e




@st.composite
def integrity_obj(draw: st.DrawFn, seq: object) -> dict[str, object]:
    def hexs(n: int) -> str:
        return draw(mostly(st.text(HEX, min_size=n, max_size=n), st.sampled_from(["A" * n, "a" * (n - 1), "a" * n + "\n", "g" * n, "a" * (n + 1)])))

    i: dict[str, object] = {"key": hexs(16), "seq": draw(mostly(st.just(seq), st.integers(-1, 5))), "prev": hexs(64),
                            "hash": hexs(64), "sig": hexs(128)}
    if draw(st.booleans()):
        i["alg"] = draw(mostly(st.just("ed25519"), st.sampled_from(["rsa", None])))
    return i


@st.composite
def batch_payload(draw: st.DrawFn) -> bytes:
    seq = draw(mostly(st.integers(1, 10**6), st.sampled_from([0, -1, 2**64, 7.0, True, "7"])))
    b: dict[str, object] = {"site": draw(mostly(st.just("s1"), st.sampled_from(["s2", "s1\n"]))), "gateway": "gw1",
                            "boot_id": draw(mostly(st.text(HEX, min_size=8, max_size=32), st.sampled_from(["ABCDEF01", "abc", "abcdef01\n", "a" * 33]))),
                            "seq": seq, "created": draw(ts), "devices": draw(st.lists(device_obj(), max_size=3))}
    if draw(st.booleans()):
        b["schema"] = draw(mostly(st.just(wire.BATCH_SCHEMA), st.sampled_from(["carbonedge.batch/2", None])))
    if draw(st.booleans()):
        b["events"] = draw(st.lists(event_obj(), max_size=2))
    if draw(st.booleans()):
        b["integrity"] = draw(mostly(integrity_obj(seq), st.sampled_from([None, {}, "x"])))
    if draw(st.integers(0, 30)) == 0:
        b["extra"] = 1
    keys = list(b)
    order = draw(st.permutations(keys))
    return json.dumps({k: b[k] for k in order}, allow_nan=True, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


def _fast(payload: bytes):  # noqa: ANN202
    try:
        return V._fast("s1", "gw1", payload)
    except _Undecided:
        return None


def _lines(points: list) -> list[str]:  # noqa: ANN001
    return [p.line() for p in points]


def _reference(payload: bytes) -> wire.Batch | None:
    try:
        return wire.Batch.model_validate_json(payload)
    except ValueError:
        return None


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch_payload())
def test_fast_path_accepts_nothing_the_wire_models_refuse_and_builds_the_same_lines(payload: bytes) -> None:
    fast = _fast(payload)
    event(f"fast path {'accepted' if fast else 'declined'}")  # --hypothesis-show-statistics: a third or more accepted
    if fast is None:
        return
    ref = _reference(payload)
    assert ref is not None, f"the fast path accepted what the wire models refuse: {payload!r}"
    assert (ref.site, ref.gateway, ref.seq) == (fast.site, fast.gateway, fast.seq)
    rp = batch_points(ref)
    assert _lines(fast.points.readings) == _lines(rp.readings)
    assert _lines(fast.points.events) == _lines(rp.events)
    assert fast.points.reading_count == ref.reading_count()
    assert not fast.rejected


def _value(draw: st.DrawFn, q: str) -> wire.Value:
    unit = quantities.QUANTITIES[q].unit
    qual = draw(st.sampled_from(["good", "good", "uncertain", "bad"]))
    if qual == "bad" and draw(st.booleans()):
        return wire.Value(v=None, u=unit, q="bad")
    return wire.Value(v=draw(st.floats(allow_nan=False, allow_infinity=False)), u=unit, q=qual)


@st.composite
def contract_batch(draw: st.DrawFn) -> wire.Batch:
    devices = []
    for i in range(draw(st.integers(0, 4))):
        names = draw(st.lists(st.sampled_from(QTYS), max_size=6, unique=True))
        devices.append(wire.DeviceReadings(
            device=f"{draw(ident_ok)[:60]}{i}", ts=draw(st.integers(NOW - 10**6, NOW + 10**6)),
            status=draw(st.sampled_from(["ok", "partial", "timeout", "error"])), error=draw(st.one_of(st.none(), st.text(max_size=30))),
            tags=draw(st.dictionaries(st.sampled_from(["area", "process", "asset", "a", "line_2"]), st.sampled_from(["meltshop", "eaf", "A", "0", "hall:3"]),
                                      max_size=3)),
            values={q: _value(draw, q) for q in names}))
    events = [wire.Event(kind=draw(st.sampled_from(["gap", "counter_reset", "clock"])), ts=NOW, device=draw(st.one_of(st.none(), ident_ok)),
                         quantity=draw(st.one_of(st.none(), st.sampled_from(QTYS))),
                         detail=draw(st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                                                                                   st.text(max_size=5), st.booleans(), st.none()), max_size=3)))
              for _ in range(draw(st.integers(0, 2)))]
    b = wire.Batch(site="s1", gateway="gw1", boot_id="abcdef0123456789", seq=draw(st.integers(1, 10**9)), created=NOW, devices=devices, events=events)
    if draw(st.booleans()):
        h = integrity.batch_hash(b)
        b = b.model_copy(update={"integrity": wire.Integrity(key="0123456789abcdef", seq=b.seq, prev=integrity.GENESIS, hash=h, sig="ab" * 64)})
    return b


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contract_batch())
def test_every_batch_a_gateway_sends_takes_the_fast_path_with_the_same_lines(b: wire.Batch) -> None:
    payload = b.to_json()
    fast = _fast(payload)
    assert fast is not None, f"a batch the wire models produced missed the fast path: {payload!r}"
    rp = batch_points(b)
    assert _lines(fast.points.readings) == _lines(rp.readings)
    assert _lines(fast.points.events) == _lines(rp.events)


def test_fast_structs_name_the_contract_fields() -> None:
    assert set(FastBatch.__struct_fields__) == set(wire.Batch.model_fields)


def test_declined_payloads_are_rejected_with_the_contracts_reason() -> None:
    base = wire.Batch(site="s1", gateway="gw1", boot_id="abcdef01", seq=3, created=NOW,
                      devices=[wire.DeviceReadings(device="m0", ts=NOW, values={"active_power": wire.Value(v=1.5, u="kW")})]).to_json()
    cases = {base.replace(b"1.5", b"NaN"): "non_finite", base.replace(b"1.5", b"1e400"): "non_finite",
             base.replace(b'"u":"kW"', b'"u":"W"'): "schema", base.replace(b'"device":"m0"', b'"device":"m0\\n"'): "schema",
             base.replace(b'"site":"s1"', b'"site":"s2"'): "topic_mismatch", base[:-3]: "bad_json"}
    for payload, reason in cases.items():
        try:
            V.batch("s1", "gw1", payload)
        except Rejected as r:
            assert r.reason == reason, (payload, r.reason, r.detail)
        else:
            raise AssertionError(f"accepted {payload!r}")
    assert math.isfinite(V.batch("s1", "gw1", base).points.readings[0].ts)
