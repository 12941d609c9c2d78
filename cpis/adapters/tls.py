"""Optional TLS and mutual TLS for ``cpis serve`` (SPEC §6).

Most deployments terminate TLS at a proxy; these settings are for those that
don't, or that want the service itself to insist on client certificates.
"""

from __future__ import annotations

import ssl

from cpis.errors import SettingsError
from cpis.settings import Settings


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """None without ``CPIS_TLS_CERT``; with ``CPIS_TLS_CLIENT_CA``, clients must present
    a certificate issued by that CA."""
    if settings.tls_cert is None:
        if settings.tls_client_ca is not None:
            raise SettingsError("CPIS_TLS_CLIENT_CA needs CPIS_TLS_CERT and CPIS_TLS_KEY")
        return None
    # Each file is named in the one line a bad one gets (issue 9, item 15).
    for name, path in (
        ("CPIS_TLS_CERT", settings.tls_cert),
        ("CPIS_TLS_KEY", settings.tls_key),
        ("CPIS_TLS_CLIENT_CA", settings.tls_client_ca),
    ):
        if path is not None:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise SettingsError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # No password: an encrypted key must fail here, not make OpenSSL prompt on the tty.
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key, password=lambda: b"")
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(
            "CPIS_TLS_CERT and CPIS_TLS_KEY are not a PEM certificate chain and its"
            f" unencrypted private key ({getattr(exc, 'reason', None) or exc})"
        ) from None
    if settings.tls_client_ca is not None:
        try:
            ctx.load_verify_locations(settings.tls_client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(
                "CPIS_TLS_CLIENT_CA is not PEM CA certificates"
                f" ({getattr(exc, 'reason', None) or exc})"
            ) from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
