"""What many source addresses cost: rate limit buckets and refusal counts stay bounded
(cpis/web/auth.py RateLimiter, cpis/web/refusals.py RefusedRequests)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cpis.errors import RateLimited
from cpis.web.auth import RateLimiter, SourceLimiter
from cpis.web.refusals import ACTION, OTHER_SOURCES, RefusedRequests

AT = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def test_a_rate_limiter_keeps_at_most_max_keys_buckets_and_still_limits() -> None:
    """A hundred thousand addresses cost at most ``max_keys`` buckets; an address over
    its rate is refused with a Retry-After of at least a second."""
    limiter = RateLimiter(per_second=1, burst=1, max_keys=100)
    for i in range(100_000):
        limiter.take(f"198.51.{i // 256 % 256}.{i % 256}-{i}")
        assert len(limiter) <= 100
    limiter.take("203.0.113.1")
    with pytest.raises(RateLimited) as refused:
        limiter.take("203.0.113.1")
    assert refused.value.retry_after >= 1


def test_refusals_from_many_sources_cost_bounded_memory_and_lose_no_count() -> None:
    """Past ``max_keys`` sources, refusals are counted under "other": every refused
    request is either written one by one or counted in exactly one summary line."""
    refusals = RefusedRequests(one_by_one=2, max_keys=5)
    written = sum(
        refusals.note(f"192.0.2.{i}", action="plan_search", status=401, client_id=None, at=AT)
        for i in range(50)
        for _ in range(3)
    )
    summary = refusals.summary()
    assert len(summary) <= 5 + 1
    assert {e.action for e in summary} == {ACTION}
    assert OTHER_SOURCES in {e.detail["source"] for e in summary}
    assert written + sum(e.detail["requests"] for e in summary) == 150
    assert refusals.summary() == []  # a new window


def test_429s_are_never_written_one_by_one() -> None:
    refusals = RefusedRequests()
    assert not any(
        refusals.note("192.0.2.1", action="plan_search", status=429, client_id=None, at=AT)
        for _ in range(20)
    )
    (line,) = refusals.summary()
    assert (line.outcome, line.detail["requests"]) == (429, 20)


def test_addresses_in_one_ipv6_64_share_a_budget() -> None:
    """A host given a /64 cannot take a fresh budget with each address in it; IPv4
    addresses, and other /64s, each have their own."""
    sources = SourceLimiter(per_second=1, burst=2, trusted_proxies=())
    sources.take("2001:db8:0:1::1")
    sources.take("2001:db8:0:1::2")
    with pytest.raises(RateLimited):
        sources.take("2001:db8:0:1::3")
    sources.take("2001:db8:0:2::1")
    for i in range(3):
        sources.take(f"192.0.2.{i}")
