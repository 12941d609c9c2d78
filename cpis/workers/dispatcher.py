"""Delivers every outbox row to every channel its LA has (issue 3).

Runs inside ``cpis serve`` and as ``cpis worker``. Three loops:

- fan-out: pending outbox rows become per-channel deliveries;
- delivery: ``concurrency`` tasks each claim the oldest due delivery of some
  target, send it, and record delivered / retry later / dead;
- subscriptions: handshakes for new rest-hook Subscriptions, heartbeats for
  quiet ones.

Retries back off exponentially with jitter until ``horizon`` after the
delivery was created; then the delivery is dead, visible to the LA and the
operator (``cpis notifications retry ID`` puts it back). Nothing is dropped
silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from cpis.errors import DeliveryFailed, Unavailable
from cpis.model.notifications import ControlKind
from cpis.ports.clock import Clock
from cpis.ports.notifications import DeliveryStore, SendControl, SendDelivery

log = structlog.get_logger("cpis.dispatch")


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    concurrency: int = 4
    horizon: timedelta = timedelta(hours=72)
    idle_poll: float = 0.2
    base_backoff: float = 2.0
    max_backoff: float = 3600.0


class Dispatcher:
    def __init__(
        self,
        store: DeliveryStore,
        clock: Clock,
        *,
        channels: Mapping[str, SendDelivery],
        send_control: SendControl,
        settings: DispatchSettings = DispatchSettings(),
        on_attempt: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._channels = channels
        self._send_control = send_control
        self._settings = settings
        self._on_attempt = on_attempt or (lambda channel, ok: None)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New work may be waiting (e.g. a lookup just queued a notification)."""
        self._wake.set()

    def retry_at(self, attempts: int, created_at: datetime) -> datetime | None:
        """When to try again after ``attempts`` failures, or None once past the horizon."""
        s = self._settings
        delay = min(s.max_backoff, s.base_backoff * 2 ** min(attempts, 30))
        delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security
        at = self._clock.now() + timedelta(seconds=delay)
        return None if at - created_at > s.horizon else at

    async def run(self) -> None:
        """Every loop, until cancelled."""
        tasks = [asyncio.create_task(self._fan_out_loop())]
        tasks += [
            asyncio.create_task(self._delivery_loop(n)) for n in range(self._settings.concurrency)
        ]
        tasks.append(asyncio.create_task(self._subscription_loop()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _guarded(self, name: str, step: Callable[[], Awaitable[bool]]) -> None:
        """Run ``step`` forever; it returns True when it did work (run again at once)."""
        while True:
            try:
                busy = await step()
            except Unavailable:
                log.warning("dispatch_deferred", loop=name, reason="database unavailable")
                busy = False
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("dispatch_loop_error", loop=name)
                busy = False
                await asyncio.sleep(1.0)
            if not busy:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.idle_poll)

    async def _fan_out_loop(self) -> None:
        async def step() -> bool:
            n = await self._store.fan_out(now=self._clock.now())
            if n:
                self._wake.set()
            return n > 0

        await self._guarded("fan_out", step)

    async def _delivery_loop(self, n: int) -> None:
        await self._guarded(f"delivery-{n}", self.deliver_one)

    async def deliver_one(self) -> bool:
        """Claim and deliver one due delivery; False when there was none."""
        async with self._store.claim(now=self._clock.now()) as claim:
            if claim is None:
                return False
            d = claim.delivery
            send = self._channels.get(d.channel)
            try:
                if send is None:
                    raise DeliveryFailed(f"channel {d.channel} is not configured here")
                await send(d)
            except DeliveryFailed as exc:
                self._on_attempt(d.channel, False)
                retry_at = self.retry_at(d.attempts, d.created_at) if exc.retryable else None
                await claim.failed(error=exc.reason, retry_at=retry_at)
                log.warning(
                    "delivery_failed",
                    channel=d.channel,
                    la=d.la_ods,
                    delivery=d.id,
                    attempt=d.attempts + 1,
                    dead=retry_at is None,
                    reason=exc.reason,
                )
                return True
            self._on_attempt(d.channel, True)
            await claim.delivered(now=self._clock.now())
            log.info("delivery_succeeded", channel=d.channel, la=d.la_ods, delivery=d.id)
            return True

    async def _subscription_loop(self) -> None:
        async def step() -> bool:
            await self._store.expire_subscriptions(now=self._clock.now())
            subs = await self._store.subscriptions_needing(now=self._clock.now())
            for sub in subs:
                kind: ControlKind = "handshake" if sub.status == "requested" else "heartbeat"
                try:
                    await self._send_control(sub, kind)
                except DeliveryFailed as exc:
                    if kind == "handshake":
                        await self._store.set_subscription_status(
                            sub.id, "error", error=exc.reason, now=self._clock.now()
                        )
                    log.warning("subscription_" + kind + "_failed", la=sub.la_ods)
                    continue
                if kind == "handshake":
                    await self._store.set_subscription_status(
                        sub.id, "active", error=None, now=self._clock.now()
                    )
                else:
                    await self._store.heartbeat_sent(sub.id, now=self._clock.now())
            return False

        await self._guarded("subscriptions", step)
