"""Settings read from CPIS_* variables: the public base URL and the path it serves under."""

from __future__ import annotations

import pytest

from cpis.errors import SettingsError
from cpis.settings import Settings


@pytest.mark.parametrize(
    ("raw", "base", "prefix"),
    [
        ("https://api.example.org/cpis", "https://api.example.org/cpis", "/cpis"),
        ("https://api.example.org/cpis/", "https://api.example.org/cpis", "/cpis"),
        ("https://h.example/nhs/cp-1.2_~", "https://h.example/nhs/cp-1.2_~", "/nhs/cp-1.2_~"),
        ("https://api.example.org", "https://api.example.org", ""),
        ("https://api.example.org/", "https://api.example.org", ""),
        ("http://[::1]:8443/cpis", "http://[::1]:8443/cpis", "/cpis"),
    ],
)  # fmt: skip
def test_the_base_urls_path_is_the_route_prefix(raw: str, base: str, prefix: str) -> None:
    """A base URL's path (trailing slash or not) is the prefix every API route is served
    under, and every URL the service renders starts with the base URL."""
    settings = Settings.from_env({"CPIS_PUBLIC_BASE_URL": raw})
    assert settings.public_base_url == base
    assert settings.path_prefix == prefix
    assert settings.fhir_base_url == f"{base}/FHIR/R4"
    assert settings.token_url == f"{base}/oauth2/token"


def test_without_a_base_url_the_listening_address_is_used_with_no_prefix() -> None:
    """Unset, the base URL is the listening address (a wildcard shown as 127.0.0.1, an
    IPv6 address in brackets), served at the root."""
    assert Settings.from_env({"CPIS_PORT": "9000"}).public_base_url == "http://127.0.0.1:9000"
    wildcard = Settings.from_env({"CPIS_HOST": "0.0.0.0"})
    assert wildcard.public_base_url == "http://127.0.0.1:8080"
    ipv6 = Settings.from_env({"CPIS_HOST": "::1"})
    assert ipv6.public_base_url == "http://[::1]:8080"
    assert ipv6.path_prefix == ""


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("api.example.org/cpis", "must start with http:// or https://"),
        ("https://api.example.org/cpis?env=int", "must not have a query"),
        ("https://api.example.org/cpis?", "must not have a query"),
        ("https://api.example.org/cpis#top", "or a fragment"),
        ("https://user:hunter2@api.example.org/cpis", "must not carry a user name or password"),
        ("https://api.example.org:http/cpis", "port"),
        ("https:///cpis", "must name a host"),
        ("https://api.example.org//cpis", "path must be plain segments"),
        ("https://api.example.org/a//b", "path must be plain segments"),
        ("https://api.example.org/cpis/../admin", "path must be plain segments"),
        ("https://api.example.org/./cpis", "path must be plain segments"),
        ("https://api.example.org/c%70is", "path must be plain segments"),
        ("https://api.example.org/cp is", "path must be plain segments"),
        ("https://api.example.org/{type}", "path must be plain segments"),
        ("https://api.example.org/cpis;v=1", "path must be plain segments"),
    ],
)
def test_a_base_url_the_service_cannot_serve_under_is_refused(raw: str, message: str) -> None:
    """A query, fragment, user name or password, a bad port or host, or a path that is not
    plain segments stops the start with a SettingsError that names the variable and says
    what is wrong, without echoing the value (it may hold a password)."""
    with pytest.raises(SettingsError, match=message) as caught:
        Settings.from_env({"CPIS_PUBLIC_BASE_URL": raw})
    assert "CPIS_PUBLIC_BASE_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_slow_client_deadlines_and_source_limits_are_read_from_the_environment() -> None:
    """The header and body deadlines, the per-source budget and the trusted proxies; no
    proxy is trusted unless named."""
    unset = Settings.from_env({})
    assert (unset.header_timeout_seconds, unset.body_timeout_seconds) == (10.0, 60.0)
    assert (unset.source_rate_limit_per_second, unset.source_rate_limit_burst) == (100, 400)
    assert unset.trusted_proxies == ()
    settings = Settings.from_env(
        {
            "CPIS_HEADER_TIMEOUT_SECONDS": "2.5",
            "CPIS_BODY_TIMEOUT_SECONDS": "300",
            "CPIS_SOURCE_RATE_LIMIT_PER_SECOND": "20",
            "CPIS_SOURCE_RATE_LIMIT_BURST": "40",
            "CPIS_TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8",
        }
    )
    assert (settings.header_timeout_seconds, settings.body_timeout_seconds) == (2.5, 300.0)
    assert (settings.source_rate_limit_per_second, settings.source_rate_limit_burst) == (20, 40)
    assert settings.trusted_proxies == ("10.0.0.0/8", "fd00::/8")
    for name, value in (
        ("CPIS_HEADER_TIMEOUT_SECONDS", "0"),
        ("CPIS_BODY_TIMEOUT_SECONDS", "soon"),
        ("CPIS_TRUSTED_PROXIES", "the load balancer"),
    ):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("env", "base"),
    [
        ({"CPIS_PORT": "0"}, "http://127.0.0.1:43210"),
        ({"CPIS_PORT": "0", "CPIS_HOST": "::1"}, "http://[::1]:43210"),
        (
            {"CPIS_PORT": "0", "CPIS_PUBLIC_BASE_URL": "http://127.0.0.1:0/cpis"},
            "http://127.0.0.1:43210/cpis",
        ),
        (
            {"CPIS_PORT": "0", "CPIS_PUBLIC_BASE_URL": "https://cpis.example.nhs.uk/cpis"},
            "https://cpis.example.nhs.uk/cpis",
        ),
    ],
)
def test_any_free_port_is_named_in_the_base_url_once_bound(env: dict[str, str], base: str) -> None:
    """CPIS_PORT=0: serve binds a port the system picks; a port of 0 in the public
    base URL (derived or given) becomes it, a base URL naming a proxy stays."""
    bound = Settings.from_env(env).listening_on(43210)
    assert bound.port == 43210
    assert bound.public_base_url == base


def test_a_base_url_with_port_0_needs_cpis_port_0() -> None:
    with pytest.raises(SettingsError, match="needs CPIS_PORT=0"):
        Settings.from_env({"CPIS_PORT": "8080", "CPIS_PUBLIC_BASE_URL": "http://127.0.0.1:0"})
