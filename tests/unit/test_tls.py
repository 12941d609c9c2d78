"""Optional mutual TLS: with a client CA configured, only clients with its certificates connect."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cpis.adapters.tls import server_ssl_context
from cpis.errors import SettingsError
from cpis.settings import Settings


def _cert(
    name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, *, ca: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> None:
    data = cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    path.write_bytes(data)


async def test_mutual_tls_admits_only_clients_with_a_certificate_from_the_ca(
    tmp_path: Path,
) -> None:
    """A client with a CA-issued certificate gets through; one without cannot connect."""
    ca = _cert("cpis-test-ca", None, ca=True)
    server = _cert("localhost", ca, ca=False)
    client = _cert("ed-system", ca, ca=False)
    _write(tmp_path / "ca.pem", ca[0], None)
    _write(tmp_path / "server.pem", server[0], server[1])
    _write(tmp_path / "client.pem", client[0], client[1])
    settings = Settings(
        tls_cert=str(tmp_path / "server.pem"),
        tls_key=str(tmp_path / "server.pem"),
        tls_client_ca=str(tmp_path / "ca.pem"),
    )
    ctx = server_ssl_context(settings)
    assert ctx is not None

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"https://localhost:{port}/"
    try:
        with_cert = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        with_cert.load_cert_chain(str(tmp_path / "client.pem"))
        async with aiohttp.ClientSession() as s, s.get(url, ssl=with_cert) as resp:
            assert await resp.text() == "ok"
        without = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        with pytest.raises(aiohttp.ClientError):
            async with aiohttp.ClientSession() as s, s.get(url, ssl=without) as resp:
                await resp.text()
    finally:
        await runner.cleanup()


def test_plain_http_without_tls_settings() -> None:
    """No certificate configured means plain HTTP (TLS terminated by a proxy)."""
    assert server_ssl_context(Settings()) is None


def test_client_ca_without_a_certificate_is_a_settings_error() -> None:
    """mTLS cannot be asked for without the server's own certificate."""
    with pytest.raises(SettingsError):
        server_ssl_context(Settings(tls_client_ca="/nowhere/ca.pem"))
