"""``carbonedge opcua``: commissioning helpers for OPC UA devices (certificates, a look at a server's values)."""

from __future__ import annotations

import argparse
import asyncio
import socket
from pathlib import Path

from carbonedge.argtypes import InputFile, Number, OutputDir
from carbonedge.errors import ConfigError


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("opcua", help="OPC UA commissioning: the gateway's certificate, a test read of its OPC UA devices")
    ps = p.add_subparsers(dest="opcua_cmd", required=True, metavar="ACTION")
    c = ps.add_parser("cert", help="create the gateway's OPC UA application instance certificate and key (self-signed)")
    c.add_argument("--out", required=True, type=OutputDir(), help="directory for <name>-cert.pem and <name>-key.pem (the key is mode 0600)")
    c.add_argument("--name", default="gateway", help="file name stem and certificate common name (default: gateway)")
    c.add_argument("--uri", help="application URI (default: urn:carbonedge:gateway:<hostname>)")
    c.add_argument("--hostname", default=socket.gethostname(), help="DNS name in the certificate (default: this host)")
    c.add_argument("--days", type=Number(int, min=1), default=825, help="validity in days (default: 825)")
    c.set_defaults(func=cmd_cert)
    r = ps.add_parser("read", help="open each OPC UA server of a gateway config once and print what its devices read "
                      "(exit 1 when a device gave no value)")
    r.add_argument("--config", required=True, type=InputFile("toml"), help="gateway TOML file")
    r.set_defaults(func=cmd_read)


def cmd_cert(a: argparse.Namespace) -> int:
    from carbonedge.edge.drivers.opcua import make_certificate

    out = Path(a.out)
    cert, key = out / f"{a.name}-cert.pem", out / f"{a.name}-key.pem"
    if cert.exists() or key.exists():
        raise ConfigError(f"{cert if cert.exists() else key} exists; not overwritten (remove it or choose another --name)")
    uri = a.uri or f"urn:carbonedge:gateway:{a.hostname}"
    make_certificate(out, a.name, uri, hostname=a.hostname, days=a.days)
    print(f"certificate {cert}\nprivate key {key} (mode 0600)\napplication URI {uri}")
    print("Add the certificate to the trusted list of each OPC UA server the gateway reads, and set certificate/private_key "
          "in its [[opcua_servers]] entries.")
    return 0


def cmd_read(a: argparse.Namespace) -> int:
    from carbonedge.edge import Agent
    from carbonedge.edge.config import load_config

    cfg = load_config(a.config)
    devices = [d for d in cfg.devices if d.driver == "opcua"]
    if not devices:
        raise ConfigError(f"{a.config}: no opcua devices")

    async def run() -> int:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            agent = Agent(cfg.model_copy(update={"devices": devices}), data_dir=Path(tmp))
            bad = 0
            try:
                for rt in agent.devices:
                    try:
                        res = await asyncio.wait_for(rt.driver.read(), 30)
                    except Exception as exc:  # noqa: BLE001 - printed for the engineer, one line a device
                        print(f"{rt.cfg.id}: {exc}")
                        bad += 1
                        continue
                    vals = ", ".join(f"{q}={'bad' if v is None else f'{v:g}'}" for q, v in res.items())
                    print(f"{rt.cfg.id}: {vals}" + (f"  [{'; '.join(res.partial)}]" if res.partial else ""))
                    bad += all(v is None for v in res.values())
            finally:
                await agent.close_sessions()
                agent.outbox.close()
            return 1 if bad else 0

    return asyncio.run(run())
