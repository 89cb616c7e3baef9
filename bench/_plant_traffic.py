"""Telemetry as plants send it, for the collector benchmark: the simulators' meters, signed as deployed.

Each gateway serves one simulated plant (steel and battery alternate, each with its own seed):
every poll cycle reads every device the simulator serves (power meters of their real register
maps, flow meters, PLC line counters, the battery plant's weather station), passes each value
through its register encoding and back (so float32 registers give the long decimals a real
meter gives), maps points to quantities as the gateway does (``profiles.publishable``), and
builds the batch with the wire models. The tags are the ones the simulator writes into the
gateway's configuration (``area``, ``process``).

What the simulators do not produce on a clean run is added at shares typical of a plant
(docs/benchmarks.md, "Realistic collector traffic"):

- a device that does not answer a poll (``status: timeout``, every value ``bad``): 0.5 % of
  device polls;
- ``uncertain`` values (a counter increment the gateway could not vouch for): 1 % of counter values;
- events (``counter_reset``, ``counter_rollover``, ``implausible``, ``clock``): 1 in 50 batches.

Every batch is signed and chained exactly as ``edge``'s :class:`carbonedge.integrity.BatchSigner`
does (same hash, header and Ed25519 signature functions), with one key per gateway; only the
chain-file writes are left out, which the collector never sees.
"""

from __future__ import annotations

import hashlib
import pickle
import random
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carbonedge import integrity, profiles, quantities, wire

T0_S = 1_767_571_200.0  # 2026-01-05 00:00 UTC
PLANTS = ("steel", "battery")
TIMEOUT_SHARE = 0.005
UNCERTAIN_SHARE = 0.01
EVENT_EVERY = 50
CACHE_VERSION = 2


def _counter_quantities() -> frozenset[str]:
    return frozenset(n for n, q in quantities.QUANTITIES.items() if q.kind == "counter")


def readings_per_cycle() -> dict[str, int]:
    """Good or uncertain values per poll cycle of each plant (before timeouts)."""
    from carbonedge.simulators.runner import Simulation

    out = {}
    for plant in PLANTS:
        sim = Simulation(plant=plant, seed=1, start=T0_S, end=T0_S + 60)
        out[plant] = sum(len(d.profile.published_quantities()) for d in sim.devices)
    return out


def _gateway_payloads(site: str, gw: str, plant: str, seed: int, cycles: int, interval_s: float = 1.0) -> tuple[list[bytes], int, str]:
    """Signed batches of one gateway; returns ``(payloads, readings, public key base64)``."""
    from carbonedge.simulators.runner import Simulation

    sim = Simulation(plant=plant, seed=seed, start=T0_S, end=T0_S + (cycles + 2) * interval_s)
    rng = random.Random(seed)
    counters = _counter_quantities()
    sk = Ed25519PrivateKey.generate()
    kid = integrity.key_id(sk.public_key())
    link = integrity.GENESIS
    boot = f"{seed:016x}"
    devs = [(d, {q: quantities.get(q).unit for q in d.profile.published_quantities()},
             {"area": d.process.area, "process": d.process.name}) for d in sim.devices]
    out: list[bytes] = []
    readings = 0
    for seq in range(1, cycles + 1):
        sim.advance_to(T0_S + seq * interval_s)
        created = int((T0_S + seq * interval_s) * 1000)
        devices = []
        for i, (d, units, tags) in enumerate(devs):
            ts = created + 3 + 7 * i  # devices are read one after another within the cycle
            if rng.random() < TIMEOUT_SHARE:
                bad = {q: wire.Value(v=None, u=u, q="bad") for q, u in units.items()}
                devices.append(wire.DeviceReadings(device=d.device, ts=ts, status="timeout", tags=tags, values=bad,
                                                   error=f"no answer from unit {d.unit_id} within 1.0 s"))
                continue
            cur = d.values()
            raw = {p.name: profiles.decode_point(p, profiles.encode_point(p, cur.get(p.name, 0.0))) for p in d.profile.points}
            vals = {}
            for q, v in profiles.publishable(d.profile, raw).items():
                quality = "uncertain" if q in counters and rng.random() < UNCERTAIN_SHARE else "good"
                vals[q] = wire.Value(v=v, u=units[q], q="bad" if v is None else quality)
                readings += v is not None
            devices.append(wire.DeviceReadings(device=d.device, ts=ts, tags=tags, values=vals))
        events = []
        if seq % EVENT_EVERY == 0:
            d = devs[rng.randrange(len(devs))][0]
            kind = ("counter_reset", "counter_rollover", "implausible", "clock")[(seq // EVENT_EVERY) % 4]
            q = d.profile.published_quantities()[-1]
            events.append(wire.Event(kind=kind, ts=created, device=d.device, quantity=q,
                                     detail={"from": round(rng.uniform(1e4, 1e6), 3), "to": 0.0, "note": "benchmark"}))
        b = wire.Batch(site=site, gateway=gw, boot_id=boot, seq=seq, created=created, devices=devices, events=events)
        h = integrity.batch_hash(b)
        sig = sk.sign(integrity.header_bytes(site, gw, kid, seq, link, h)).hex()
        integ = wire.Integrity(key=kid, seq=seq, prev=link, hash=h, sig=sig)
        link = integrity.link_of(site, gw, integ)
        out.append(b.model_copy(update={"integrity": integ}).to_json())
    return out, readings, integrity.public_b64(sk.public_key())


def plant_traffic(site_prefix: str, gateways: int, cycles: int, cache_dir: Path | None = None) -> tuple[list[tuple[str, list[bytes]]], int]:
    """``([(topic, payloads of one gateway)], readings)`` for ``gateways`` gateways; cached on disk (generation takes a while)."""
    key = hashlib.sha256(f"{CACHE_VERSION}/{site_prefix}/{gateways}/{cycles}".encode()).hexdigest()[:16]
    path = cache_dir / f"plant-traffic-{key}.pickle" if cache_dir else None
    if path and path.exists():
        with open(path, "rb") as f:
            return pickle.load(f)  # noqa: S301 - our own cache file
    per: list[tuple[str, list[bytes]]] = []
    total = 0
    for g in range(gateways):
        plant = PLANTS[g % len(PLANTS)]
        site = f"{site_prefix}-{plant}"
        gw = f"gw{g:02d}"
        payloads, n, _pub = _gateway_payloads(site, gw, plant, 1000 + g, cycles)
        per.append((wire.telemetry_topic(site, gw), payloads))
        total += n
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump((per, total), f)
        tmp.replace(path)
    return per, total
