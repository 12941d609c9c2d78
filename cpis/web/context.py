"""Per-request facts the middleware and the routes share."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from cpis.model import Principal


@dataclass(slots=True)
class RequestInfo:
    trace_id: str
    action: str = "unmatched"
    principal: Principal | None = None
    # Set when the route wrote its own audit line inside its transaction.
    audited: bool = False


REQUEST_INFO = web.RequestKey("request_info", RequestInfo)


def info(request: web.Request) -> RequestInfo:
    return request[REQUEST_INFO]
