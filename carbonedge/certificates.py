"""OPC UA application instance certificates (OPC 10000-6 §6.2.2), shared by the gateway and the simulated PLCs."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509


def make_certificate(out_dir: Path, name: str, uri: str, *, server: bool = False, hostname: str = "localhost",
                     days: int = 825) -> tuple[Path, Path]:
    """Create a self-signed OPC UA application instance certificate (OPC 10000-6 §6.2.2) and its key.

    Writes ``{name}-cert.pem`` and ``{name}-key.pem`` (mode 0600) into ``out_dir``; returns their paths.
    The URI goes into subjectAltName, where servers look for the client's application URI.
    """
    import ipaddress
    import os

    from asyncua.crypto import cert_gen
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = cert_gen.generate_private_key()
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri), x509.DNSName(hostname)]
    try:
        sans.append(x509.IPAddress(ipaddress.ip_address(hostname)))
    except ValueError:
        pass
    usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = cert_gen.generate_self_signed_app_certificate(key, name, {}, sans, usage, days=days)
    cert_path, key_path = out_dir / f"{name}-cert.pem", out_dir / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(cert_gen.dump_private_key_as_pem(key))
    return cert_path, key_path
