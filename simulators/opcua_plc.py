"""A simulated PLC's OPC UA server: serves objects of a node map (:mod:`carbonedge.nodemaps`).

The node map is the same data the gateway reads with, so the served address space and the
gateway's view of it cannot drift apart. Each object (a production line) is a folder under
``/Objects/PLC``; its variables carry the string node ids of the map in the map's namespace.

Security as on a plant: the server offers None only when asked to (lab), otherwise
Basic256Sha256 Sign and SignAndEncrypt with its own certificate, and it accepts a client
only when the client's certificate is in its trust list (``trusted``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

from carbonedge import nodemaps

for _name in ("asyncua", "asyncua.server", "asyncua.common", "asyncua.uaprotocol", "asyncuagds.validate"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

_VT = {name: getattr(ua.VariantType, name) for name in nodemaps.UA_TYPES}


def _aspace_shelf() -> tuple[Path | None, Path | None]:
    """The standard address space (namespace 0) as asyncua's shelf, cached per asyncua version.

    Building namespace 0 from asyncua's generated code costs seconds of CPU at every server start (more on
    a busy machine); asyncua loads it lazily from a shelf instead ("intended for slow devices"). The first
    start writes the shelf into a fresh directory, which then replaces the cache directory in one rename.
    Returns ``(shelf to pass to init, directory being built or None)``.
    """
    import importlib.metadata
    import os
    import tempfile

    try:
        version = importlib.metadata.version("asyncua")
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "carbonedge"
        final = root / f"asyncua-{version}-ns0"
        if (final / "ns0").is_file():
            return final / "ns0", None
        root.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".asyncua-{version}-", dir=root))
        return building / "ns0", building
    except OSError:
        return None, None  # no writable cache: build namespace 0 every time


def _keep_shelf(building: Path) -> None:
    import shutil

    final = building.parent / f"{building.name[1:].rsplit('-', 1)[0]}-ns0"
    (building / "ns0").touch()  # asyncua checks for this path; dbm writes ns0.dat/.dir beside it
    building.chmod(0o755)
    try:
        building.rename(final)
    except OSError:  # another process was first
        shutil.rmtree(building, ignore_errors=True)


def prepare() -> None:
    """Build the cached namespace 0 now if it is missing (once per machine and asyncua version), so that the
    simulated PLCs start in a fraction of a second."""
    import asyncio

    shelf, building = _aspace_shelf()
    if building is None:
        return

    async def build() -> None:
        await Server().init(shelf)

    asyncio.run(build())
    _keep_shelf(building)


class OpcUaPlc:
    """An asyncua server with one object per line of ``node_map``; :meth:`set` changes what it serves."""

    def __init__(self, node_map: nodemaps.NodeMap, objects: Iterable[str], *, host: str = "127.0.0.1", port: int = 4840,
                 certificate: Path | None = None, private_key: Path | None = None, trusted: Iterable[Path] = (),
                 allow_none: bool = True, name: str = "carbonedge simulated PLC") -> None:
        self.node_map = node_map
        self.objects = list(objects)
        self.host, self.port = host, port
        self.endpoint = f"opc.tcp://{host}:{port}/carbonedge/plc"
        self.certificate, self.private_key = certificate, private_key
        self.trusted = list(trusted)
        self.allow_none = allow_none
        self.name = name
        self.server: Server | None = None
        self.nodes: dict[tuple[str, str], ua.NodeId] = {}  # (object, point) -> node id
        self._served: dict[ua.NodeId, Any] = {}
        self._last: dict[str, dict[str, float]] = {}
        #: Items the clients monitor, and Read requests served (the simulator's synchronised start counts them).
        self.monitored: set[ua.NodeId] = set()
        self.reads: dict[ua.NodeId, int] = {}

    async def start(self) -> OpcUaPlc:
        s = Server()
        shelf, building = _aspace_shelf()
        await s.init(shelf)
        if building is not None:
            _keep_shelf(building)
        s.set_endpoint(self.endpoint)
        s.set_server_name(self.name)
        await s.set_application_uri("urn:carbonedge:simulated-plc")
        policies = []
        if self.allow_none:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        if self.certificate is not None and self.private_key is not None:
            await s.load_certificate(str(self.certificate))
            await s.load_private_key(str(self.private_key))
            policies += [ua.SecurityPolicyType.Basic256Sha256_Sign, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
            store = TrustStore(list(self.trusted), [])
            await store.load()
            opts = (CertificateValidatorOptions.TIME_RANGE | CertificateValidatorOptions.URI | CertificateValidatorOptions.TRUSTED
                    | CertificateValidatorOptions.PEER_CLIENT)
            s.set_certificate_validator(CertificateValidator(opts, store))
        s.set_security_policy(policies)
        ns = await s.register_namespace(self.node_map.namespace)
        plc = await s.nodes.objects.add_folder(ua.NodeId("PLC", ns), ua.QualifiedName("PLC", ns))
        for obj in self.objects:
            folder = await plc.add_folder(ua.NodeId(f"{obj}", ns), ua.QualifiedName(obj, ns))
            for p in self.node_map.points:
                spec = p.node_for(obj)
                vt = _VT[p.ua_type]
                initial = ua.Variant(False if p.ua_type == "Boolean" else (0.0 if p.ua_type in ("Float", "Double") else 0), vt)
                if p.is_browse_path():
                    segs = [x for x in spec.split("/") if x]
                    leaf = segs[-1]
                    nid = ua.NodeId(f"{obj}/{leaf}", ns)
                else:
                    ident = spec.removeprefix("s=")
                    leaf = ident.split(".")[-1]
                    nid = ua.NodeId(ident, ns)
                var = await folder.add_variable(nid, ua.QualifiedName(leaf, ns), initial)
                # Until the program writes a value, the server says so (OPC 10000-4 §7.39), as real servers do after a
                # restart: a client must not take the placeholder for a reading (a counter at 0 would look like a reset).
                await s.write_attribute_value(var.nodeid, ua.DataValue(initial, StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)))
                self.nodes[(obj, p.name)] = var.nodeid
        s.subscribe_server_callback(CallbackType.ItemSubscriptionCreated, self._on_monitored)
        s.subscribe_server_callback(CallbackType.PostRead, self._on_read)
        await s.start()
        self.server = s
        return self

    def _on_monitored(self, event: Any, dispatcher: Any) -> None:
        for req, res in zip(event.request_params.ItemsToCreate, event.response_params):
            if res.StatusCode.is_good():
                self.monitored.add(req.ItemToMonitor.NodeId)

    def _on_read(self, event: Any, dispatcher: Any) -> None:
        for rv in event.request_params.NodesToRead:
            self.reads[rv.NodeId] = self.reads.get(rv.NodeId, 0) + 1

    def served_by_gateway(self, obj: str, min_reads: int) -> bool:
        """Whether a gateway watches every value of ``obj``: monitored, or read ``min_reads`` times."""
        return all(nid in self.monitored or self.reads.get(nid, 0) >= min_reads
                   for (o, _), nid in self.nodes.items() if o == obj)

    async def set(self, obj: str, values: dict[str, float], *, source_time: float | None = None,
                  status: dict[str, int] | None = None) -> None:
        """Serve ``values`` (canonical units, by point name) for ``obj``; only changes are written.

        ``status`` gives a point an OPC UA status code (e.g. ``ua.StatusCodes.BadSensorFailure``).
        """
        assert self.server is not None
        self._last.setdefault(obj, {}).update(values)
        ts = dt.datetime.fromtimestamp(source_time, dt.UTC) if source_time is not None else None
        for p in self.node_map.points:
            if p.name not in values:
                continue
            code = (status or {}).get(p.name, ua.StatusCodes.Good)
            raw = values[p.name] / p.scale
            if p.ua_type == "Boolean":
                v: Any = bool(raw)
            elif p.ua_type in ("Float", "Double"):
                v = float(raw)
            else:
                v = int(round(raw)) % (1 << 64) if p.ua_type.startswith("U") or p.ua_type == "Byte" else int(round(raw))
                if p.ua_type in ("UInt32",):
                    v %= 1 << 32
                elif p.ua_type == "UInt16":
                    v %= 1 << 16
            nid = self.nodes[(obj, p.name)]
            key = (v, code)
            if self._served.get(nid) == key:
                continue
            self._served[nid] = key
            dv = ua.DataValue(ua.Variant(v, _VT[p.ua_type]), StatusCode=ua.StatusCode(code), SourceTimestamp=ts,
                              ServerTimestamp=dt.datetime.now(dt.UTC))
            await self.server.write_attribute_value(nid, dv)

    def last_values(self, obj: str) -> dict[str, float]:
        return dict(self._last.get(obj, {}))

    async def stop(self) -> None:
        if self.server is not None:
            s, self.server = self.server, None
            await s.stop()

