"""The gateway's durable outbox: contiguous seqs, boot states, bounded size with counted overflow."""

from __future__ import annotations

import json

import pytest

from carbonedge import wire
from carbonedge.edge.outbox import Outbox

T0 = 1_767_571_200_000


def _batch(seq: int, n: int = 50, boot: str = "b00710") -> tuple[bytes, int, int]:
    d = wire.DeviceReadings(device="m1", ts=T0 + seq * 1000, values={"active_power": wire.Value(v=float(i), u="kW") for i in range(1)})
    payload = wire.Batch(site="s", gateway="g", boot_id=boot + "00", seq=seq, created=T0 + seq * 1000, devices=[d] * n).to_json()
    return payload, T0 + seq * 1000, n


def test_seqs_are_contiguous_and_pruned_only_by_the_watermark(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    seqs = [ob.append(_batch) for _ in range(10)]
    assert seqs == list(range(1, 11))
    assert ob.acknowledge(4) == 4
    assert [s for s, _ in ob.pending(0, 100)] == list(range(5, 11))
    assert ob.acknowledge(3) == 0  # a stale watermark changes nothing
    st = ob.stats()
    assert st["batches"] == 6 and st["watermark"] == 4 and st["last_seq"] == 10


def test_boot_states_tell_a_crash_from_a_clean_stop(tmp_path):
    p = tmp_path / "o.sqlite"
    ob = Outbox(p)
    assert ob.open_boot("aaaa0001").state == "new"
    ob.append(_batch)
    ob.close()  # no mark_stopped: like a kill
    ob = Outbox(p)
    prev = ob.open_boot("aaaa0002")
    assert (prev.boot_id, prev.state, prev.last_seq, prev.last_created_ms) == ("aaaa0001", "running", 1, T0 + 1000)
    ob.mark_stopped()
    ob.close()
    assert Outbox(p).open_boot("aaaa0003").state == "stopped"


def test_drop_oldest_keeps_seqs_contiguous_and_counts_every_loss(tmp_path):
    one = len(_batch(1)[0])
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=one * 5 + 100, overflow="drop_oldest", site="s", gateway="g")
    for _ in range(12):
        assert ob.append(_batch) is not None
    rows = ob.pending(0, 100)
    assert [s for s, _ in rows] == list(range(1, 13))  # nothing vanished: the collector's watermark can advance
    tombs = [wire.Batch.model_validate_json(p) for _, p in rows if not json.loads(p)["devices"]]
    assert len(tombs) >= 7
    for t in tombs:
        (ev,) = t.events
        assert ev.kind == "overflow" and ev.detail["discarded_readings"] == 50 and ev.ts == t.created
    st = ob.stats()
    assert st["dropped_batches"] == len(tombs) and st["dropped_readings"] == 50 * len(tombs)
    assert st["bytes"] <= one * 5 + 100
    # The newest cycles are intact.
    assert json.loads(rows[-1][1])["devices"]


def test_drop_newest_refuses_and_stores_nothing(tmp_path):
    one = len(_batch(1)[0])
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=one * 3, overflow="drop_newest")
    assert [ob.append(_batch) for _ in range(5)] == [1, 2, 3, None, None]
    assert ob.last_seq == 3
    ob.acknowledge(3)  # room again
    assert ob.append(_batch) == 4


def test_counter_state_is_committed_with_the_batch(tmp_path):
    p = tmp_path / "o.sqlite"
    ob = Outbox(p)
    ob.append(_batch, [("m1", "active_energy_import", 10.0, 5.0, T0)])

    def boom(seq: int) -> tuple[bytes, int, int]:
        raise RuntimeError("power cut while building")

    with pytest.raises(RuntimeError):
        ob.append(boom, [("m1", "active_energy_import", 99.0, 99.0, T0 + 1)])
    ob.close()
    assert Outbox(p).counter_rows() == [("m1", "active_energy_import", 10.0, 5.0, T0)]
