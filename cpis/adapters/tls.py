"""Optional TLS and mutual TLS for ``cpis serve`` (SPEC §6).

Most deployments terminate TLS at a proxy; these settings are for those that
don't, or that want the service itself to insist on client certificates.
"""

from __future__ import annotations

import ssl

from cpis.settings import Settings, SettingsError


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """None without ``CPIS_TLS_CERT``; with ``CPIS_TLS_CLIENT_CA``, clients must present
    a certificate issued by that CA."""
    if settings.tls_cert is None:
        if settings.tls_client_ca is not None:
            raise SettingsError("CPIS_TLS_CLIENT_CA needs CPIS_TLS_CERT and CPIS_TLS_KEY")
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
        if settings.tls_client_ca is not None:
            ctx.load_verify_locations(settings.tls_client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"TLS files could not be loaded: {exc}") from None
    return ctx
