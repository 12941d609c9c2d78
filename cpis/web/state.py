"""Typed application state shared by the routes (aiohttp ``web.AppKey``)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from cpis.ports import Clock, Database, TokenAuthority
from cpis.settings import Settings
from cpis.web.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    db: Database
    clock: Clock
    tokens: TokenAuthority
    metrics: Metrics


SERVICES = web.AppKey("services", Services)
