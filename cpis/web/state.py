"""Typed application state shared by the routes (aiohttp ``web.AppKey``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from cpis.ports.clock import Clock
from cpis.ports.database import Database
from cpis.ports.person_index import PersonIndex
from cpis.ports.tokens import TokenAuthority
from cpis.settings import Settings
from cpis.web.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    db: Database
    clock: Clock
    tokens: TokenAuthority
    metrics: Metrics
    # None: CPIS_PERSON_INDEX=none (uploads checked by check digit only)
    person_index: PersonIndex | None = None


SERVICES = web.AppKey("services", Services)


class Signal:
    """A hook the routes can fire; the in-process dispatcher listens to it so a new
    notification is fanned out at once rather than at its next poll."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    def connect(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def __call__(self) -> None:
        for listener in self._listeners:
            listener()


NOTIFICATIONS_QUEUED = web.AppKey("notifications_queued", Signal)
