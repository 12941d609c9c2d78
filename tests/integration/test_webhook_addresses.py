"""Rest-hook endpoints are chosen by LA clients: the service reaches only public
addresses and the networks the operator allows (an SSRF guard), checked on the
addresses the connection really uses."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cpis.adapters.webhook import (
    DEFAULT_ALLOWED_NETWORKS,
    LOOPBACK_NETWORKS,
    WebhookSender,
    address_allowed,
)
from cpis.demo import demo_settings
from cpis.errors import DeliveryFailed, SettingsError
from cpis.settings import Settings

DEFAULTS = tuple(ipaddress.ip_network(n) for n in DEFAULT_ALLOWED_NETWORKS)
LOOPBACK = tuple(ipaddress.ip_network(n) for n in LOOPBACK_NETWORKS)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[TestServer, list[bytes]]]:
    got: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server, got
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),  # not even loopback by default: /metrics, port maps
        ("::1", False),
        ("127.0.0.53", False),
        ("10.1.2.3", False),
        ("172.16.0.9", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped private
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        # IPv6 forms that carry an IPv4 address are judged by that address:
        ("64:ff9b::7f00:1", False),  # NAT64 (RFC 6052) of 127.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("64:ff9b:1::7f00:1", False),  # local-use NAT64 (RFC 8215): internal
        ("2002:7f00:1::", False),  # 6to4 (RFC 3056) of 127.0.0.1
        ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("::127.0.0.1", False),  # IPv4-compatible (RFC 4291, deprecated)
        ("::10.0.0.1", False),
        ("::ffff:0:7f00:1", False),  # IPv4-translated (RFC 2765)
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo: client 127.0.0.1
    ],
)
def test_which_addresses_may_be_reached(address: str, allowed: bool) -> None:
    """By default only public addresses, and an IPv6 address that carries an IPv4 one
    only if that IPv4 address is public."""
    assert address_allowed(address, DEFAULTS) is allowed


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "2002:7f00:1::", "64:ff9b::7f00:1"]
)
def test_allowing_loopback_allows_its_every_spelling(address: str) -> None:
    """An operator who allows 127.0.0.0/8 reaches it however the address is written."""
    assert address_allowed(address, LOOPBACK)


async def test_a_local_endpoint_is_reached_when_loopback_is_allowed(
    receiver: tuple[TestServer, list[bytes]],
) -> None:
    server, got = receiver
    sender = WebhookSender(allowed_networks=LOOPBACK_NETWORKS)
    try:
        for host in ("127.0.0.1", "localhost"):
            await sender.post(f"http://{host}:{server.port}/hook", b"{}", headers={}, timeout_s=5)
    finally:
        await sender.close()
    assert got == [b"{}", b"{}"]


async def test_by_default_nothing_private_is_reached(
    receiver: tuple[TestServer, list[bytes]],
) -> None:
    """By default (no allowed networks): by name (the resolver drops the address) and by IP
    literal (checked before connecting), the service's own loopback included, the delivery
    fails for good with a reason the LA can act on."""
    server, got = receiver
    sender = WebhookSender()
    try:
        for url in (
            f"http://localhost:{server.port}/hook",
            f"http://127.0.0.1:{server.port}/hook",
            f"http://[::ffff:127.0.0.1]:{server.port}/hook",
            f"http://[2002:7f00:1::]:{server.port}/hook",
            "https://169.254.169.254/latest/meta-data/",
            "https://[fd00::1]/hook",
        ):
            with pytest.raises(DeliveryFailed) as failed:
                await sender.post(url, b"{}", headers={}, timeout_s=5)
            assert not failed.value.retryable
            assert "non-public" in str(failed.value)
    finally:
        await sender.close()
    assert got == []


async def test_failures_name_no_connection_detail() -> None:
    """A refused connection and a silent one are the same reason to the LA ("no response"),
    so delivery reasons cannot map which ports answer on an allowed network."""
    import asyncio
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)  # accepts into the backlog, never answers
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused_port = closed.getsockname()[1]
    sender = WebhookSender(allowed_networks=LOOPBACK_NETWORKS)
    reasons = []
    try:
        for url, timeout in (
            (f"http://127.0.0.1:{refused_port}/hook", 5.0),
            (f"http://127.0.0.1:{silent.getsockname()[1]}/hook", 0.3),
        ):
            with pytest.raises(DeliveryFailed) as failed:
                await asyncio.wait_for(sender.post(url, b"{}", headers={}, timeout_s=timeout), 10)
            assert failed.value.retryable
            reasons.append(str(failed.value))
    finally:
        await sender.close()
        silent.close()
    assert reasons == ["no response from the endpoint"] * 2


def test_the_setting() -> None:
    """Public addresses only unless networks are named; the demo alone adds loopback."""
    assert Settings.from_env({}).webhook_allowed_networks == ()
    assert demo_settings(Settings.from_env({})).webhook_allowed_networks == LOOPBACK_NETWORKS
    assert demo_settings(
        Settings.from_env({"CPIS_WEBHOOK_ALLOWED_NETWORKS": "10.20.0.0/16"})
    ).webhook_allowed_networks == ("10.20.0.0/16",)
    assert (
        Settings.from_env({"CPIS_WEBHOOK_ALLOWED_NETWORKS": "none"}).webhook_allowed_networks == ()
    )
    assert Settings.from_env(
        {"CPIS_WEBHOOK_ALLOWED_NETWORKS": "10.20.0.0/16, 127.0.0.1/32"}
    ).webhook_allowed_networks == ("10.20.0.0/16", "127.0.0.1/32")
    with pytest.raises(SettingsError):
        Settings.from_env({"CPIS_WEBHOOK_ALLOWED_NETWORKS": "intranet"})
