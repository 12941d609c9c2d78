"""Rest-hook endpoints are chosen by LA clients: the service reaches only public
addresses and the networks the operator allows (an SSRF guard), checked on the
addresses the connection really uses."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cpis.adapters.webhook import DEFAULT_ALLOWED_NETWORKS, WebhookSender, address_allowed
from cpis.settings import Settings, SettingsError
from cpis.workers.dispatcher import DeliveryFailed

DEFAULTS = tuple(ipaddress.ip_network(n) for n in DEFAULT_ALLOWED_NETWORKS)


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
        ("127.0.0.1", True),  # allowed by default: local testing
        ("::1", True),
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
    ],
)
def test_which_addresses_may_be_reached(address: str, allowed: bool) -> None:
    assert address_allowed(address, DEFAULTS) is allowed


async def test_a_local_endpoint_is_reached_by_default(
    receiver: tuple[TestServer, list[bytes]],
) -> None:
    server, got = receiver
    sender = WebhookSender()
    try:
        for host in ("127.0.0.1", "localhost"):
            await sender.post(f"http://{host}:{server.port}/hook", b"{}", headers={}, timeout_s=5)
    finally:
        await sender.close()
    assert got == [b"{}", b"{}"]


async def test_without_allowed_networks_nothing_private_is_reached(
    receiver: tuple[TestServer, list[bytes]],
) -> None:
    """By name (the resolver drops the address) and by IP literal (checked before
    connecting): the delivery fails for good, with a reason the LA can act on."""
    server, got = receiver
    sender = WebhookSender(allowed_networks=())
    try:
        for url in (
            f"http://localhost:{server.port}/hook",
            f"http://127.0.0.1:{server.port}/hook",
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


def test_the_setting() -> None:
    assert Settings.from_env({}).webhook_allowed_networks == DEFAULT_ALLOWED_NETWORKS
    assert (
        Settings.from_env({"CPIS_WEBHOOK_ALLOWED_NETWORKS": "none"}).webhook_allowed_networks == ()
    )
    assert Settings.from_env(
        {"CPIS_WEBHOOK_ALLOWED_NETWORKS": "10.20.0.0/16, 127.0.0.1/32"}
    ).webhook_allowed_networks == ("10.20.0.0/16", "127.0.0.1/32")
    with pytest.raises(SettingsError):
        Settings.from_env({"CPIS_WEBHOOK_ALLOWED_NETWORKS": "intranet"})
