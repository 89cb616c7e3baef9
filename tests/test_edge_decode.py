"""The gateway's one-pass block decoder agrees with the reference decoder in carbonedge.profiles, for every profile."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from carbonedge import profiles
from carbonedge.edge.drivers.modbus import BlockDecoder

BLOCKS = [(name, b) for name, prof in profiles.PROFILES.items() for order in ("big", "little")
          for b in profiles.read_plan(dataclasses.replace(prof, points=tuple(dataclasses.replace(p, word_order=order) for p in prof.points)))]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(BLOCKS), st.data())
def test_block_decoder_matches_the_reference(case, data):
    _, block = case
    regs = data.draw(st.lists(st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0, 0xFFFF, 0x7FFF, 0x7FC0, 0x7F80])),
                              min_size=block.count, max_size=block.count))
    fast = BlockDecoder(block).decode(regs)
    ref = profiles.decode_block(block, regs)
    assert fast.keys() == ref.keys()
    for k, v in ref.items():
        if v is None or not math.isfinite(v):
            assert fast[k] is None, k  # "not available" patterns and NaN/inf are bad values
        else:
            assert fast[k] == v, k
