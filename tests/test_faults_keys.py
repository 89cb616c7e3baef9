"""Key rotation and revocation as documented in docs/reliability.md ("Signing keys"): a chain continues across a
key switch, validity windows in the trust file decide which key may sign when, and a key revoked from a time on
makes everything it signed afterwards a finding."""

from __future__ import annotations

import json
from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carbonedge import wire
from carbonedge.clock import iso
from carbonedge.integrity import Archive, BatchSigner, TrustStore
from carbonedge.verify import verify

T0 = 1_767_571_200_000


def _batch(seq: int) -> wire.Batch:
    dev = wire.DeviceReadings(device="m1", ts=T0 + seq * 60_000, tags={"area": "melt"},
                              values={"active_power": wire.Value(v=100.0 + seq, u="kW")})
    return wire.Batch(site="s1", gateway="gw1", boot_id="abcdef0123", seq=seq, created=T0 + seq * 60_000, devices=[dev])


def test_a_rotated_key_continues_the_chain_and_a_revoked_key_is_reported(tmp_path):
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    archive = Archive(tmp_path / "state" / "archive", "c1")
    signer = BatchSigner(old, "s1", "gw1", tmp_path / "chain.json")
    signer.resume(0)
    for seq in range(1, 11):
        if seq == 6:  # the switch: a new key file, the agent restarted on the same chain state
            signer = BatchSigner(new, "s1", "gw1", tmp_path / "chain.json")
            signer.resume(5)
        b = signer.sign(_batch(seq))
        signer.committed(seq)
        archive.append([("s1", "gw1", seq, b.to_json())])
    archive.close()
    switch = T0 + 6 * 60_000

    trust = TrustStore()
    trust.add("s1", "gw1", old.public_key())
    trust.add("s1", "gw1", new.public_key())
    k_old, k_new = trust.keys[("s1", "gw1")]
    trust.keys[("s1", "gw1")] = [replace(k_old, valid_until_ms=switch), replace(k_new, valid_from_ms=switch)]
    trust.save(tmp_path / "trusted-keys.json")
    doc = json.loads((tmp_path / "trusted-keys.json").read_text())
    assert doc["gateways"]["s1/gw1"][0]["valid_until"] == doc["gateways"]["s1/gw1"][1]["valid_from"] == iso(switch / 1000)
    rep = verify([tmp_path / "state"], TrustStore.load(tmp_path / "trusted-keys.json"))
    assert rep.ok, rep.findings
    assert rep.gateways["s1/gw1"].batches == 10

    # The old key revoked from seq 3's time on (say it leaked then): seq 3-5 were signed by a key no longer trusted.
    trust.keys[("s1", "gw1")][0] = replace(k_old, valid_until_ms=T0 + 3 * 60_000)
    rep = verify([tmp_path / "state"], trust)
    found = {(f.kind, f.seq) for f in rep.findings}
    assert {("inserted", 3), ("inserted", 4), ("inserted", 5)} <= found, found
    assert {s for _, s in found} <= {3, 4, 5, 6}, found  # seq 6 may be named too: its predecessor is no longer genuine

    # The new key missing from the trust file: nothing it signed verifies.
    only_old = TrustStore()
    only_old.add("s1", "gw1", old.public_key())
    rep = verify([tmp_path / "state"], only_old)
    assert {f.seq for f in rep.findings if f.kind == "inserted"} == set(range(6, 11)), rep.findings
