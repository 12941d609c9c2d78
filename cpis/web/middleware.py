"""The one error middleware, request context, canonical log line and audit.

Every request gets: a trace id (the caller's ``TraceID`` header, echoed, or a
new one), one log line with method, route template, status, duration and
client (never the path's or query's values: they may hold an NHS number), a
security audit line unless its route already wrote one in its own
transaction, and errors rendered as OperationOutcome.

Before its route runs, a request is counted against its source address's rate
(:class:`~cpis.web.auth.SourceLimiter`: before authentication, so that a flood
of bad tokens is refused too) and held to its route's body limit: an upload's
(``CPIS_MAX_UPLOAD_BYTES``) for ``POST /la/v1/uploads`` and the uploads page's
form, ``CPIS_MAX_BODY_BYTES`` for every other route, whether the body says its length or is chunked.
Requests refused before anyone was authenticated, and 429s, go to the audit
log through :class:`~cpis.web.refusals.RefusedRequests`, summarised.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from cpis.errors import (
    CpisError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    Unavailable,
)
from cpis.fhir.resources import operation_outcome_from
from cpis.model import AuditEntry
from cpis.web.auth import SOURCE_LIMITER, verified_org
from cpis.web.context import REQUEST_INFO, RequestInfo
from cpis.web.refusals import RefusedRequests
from cpis.web.render import fhir_response
from cpis.web.state import SERVICES

log = structlog.get_logger("cpis.web")

_TRACE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Operational endpoints carry no data and are polled constantly by
# orchestrators; auditing them would bury the log that matters.
_UNAUDITED = {"healthz", "readyz", "metrics", "jwks", "page_asset"}
# Nor are they rate limited by source: behind a proxy that is not trusted every
# request shares one source, and a flood must not fail the orchestrator's probes.
# (The web pages' stylesheet and scripts are not audited either: a page's view is.)
_UNLIMITED = _UNAUDITED - {"page_asset"}
# Routes whose body is a batch file, allowed CPIS_MAX_UPLOAD_BYTES.
_UPLOADS = {"la_upload", "page_upload"}
# Not a status that is ever sent: the client went away before its answer (nginx's
# "client closed request"), recorded so the log line and the audit say so.
_CLIENT_CLOSED = 499

REFUSALS = web.AppKey("refusals", RefusedRequests)


def _from_http_exception(exc: web.HTTPException) -> CpisError:
    if isinstance(exc, web.HTTPNotFound):
        return NotFound("no such resource or endpoint")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed("method not allowed here")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge("request body too large")
    return InvalidRequest(exc.reason or "bad request", status=exc.status)


def error_response(err: CpisError) -> web.Response:
    headers: dict[str, str] = {}
    if isinstance(err, Unavailable | RateLimited):
        headers["Retry-After"] = str(err.retry_after)
    if err.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="cpis"'
    return fhir_response(operation_outcome_from(err), status=err.status, headers=headers)


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    caller_trace = request.headers.get("TraceID", "")
    trace_id = caller_trace if _TRACE_ID.match(caller_trace) else str(uuid.uuid4())
    route = request.match_info.route
    action = route.name or "unmatched"
    ri = RequestInfo(trace_id=trace_id, action=action)
    request[REQUEST_INFO] = ri
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(trace_id=trace_id)
    started = time.perf_counter()
    services = request.app[SERVICES]
    sources = request.app[SOURCE_LIMITER]
    source = sources.source(request)
    try:
        if action not in _UNLIMITED:
            sources.take(source)
        response = await handler(_with_body_limit(request, action))
    except CpisError as err:
        response = error_response(err)
        if isinstance(err, RequestTimeout):
            response.force_close()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(_from_http_exception(exc))
        if "Allow" in exc.headers:  # a 405 must say what is allowed (RFC 9110 §15.5.6)
            response.headers["Allow"] = exc.headers["Allow"]
    except web.RequestPayloadError:
        # Its framing or encoding was broken: nothing more can be read on this connection.
        response = error_response(
            InvalidRequest(
                "the request body could not be read: its framing is not valid", status=400
            )
        )
        response.force_close()
    except Exception as exc:
        response = _unexpected(request, action, exc)
    response.headers["TraceID"] = trace_id
    if not ri.audited and action not in _UNAUDITED:
        refused = response.status == 429 or (ri.principal is None and response.status >= 400)
        if not refused or request.app[REFUSALS].note(
            source,
            action=action,
            status=response.status,
            client_id=ri.principal.client_id if ri.principal else None,
            at=services.clock.now(),
        ):
            await _audit(request, ri, response.status)
    elapsed = time.perf_counter() - started
    services.metrics.requests.labels(action, str(response.status)).inc()
    services.metrics.latency.labels(action).observe(elapsed)
    log.info(
        "request",
        method=request.method,
        route=action,
        status=response.status,
        ms=round(elapsed * 1000, 2),
        client=ri.principal.client_id if ri.principal else None,
    )
    return response


def _with_body_limit(request: web.Request, action: str) -> web.Request:
    """``request``, reading at most its route's body limit, told or chunked.

    aiohttp applies one limit to every route (``client_max_size``, checked as
    ``read()`` goes, so it bounds chunked bodies too); a request of its own with
    the route's limit is how it is raised for one route (aio-libs/aiohttp#5704).
    A Content-Length over the limit is refused before anything is read.
    """
    settings = request.app[SERVICES].settings
    limit = settings.max_upload_bytes if action in _UPLOADS else settings.max_body_bytes
    if (request.content_length or 0) > limit:
        raise PayloadTooLarge(f"request bodies here are limited to {limit} bytes")
    if limit == request.client_max_size:
        return request
    return request.clone(client_max_size=limit)


def _unexpected(request: web.Request, action: str, exc: Exception) -> web.Response:
    """The answer to an exception no route meant to raise."""
    transport = request.transport
    if isinstance(exc, ConnectionResetError) and (transport is None or transport.is_closing()):
        log.info("client_disconnected", action=action)
        return error_response(
            InvalidRequest("the client closed the connection", status=_CLIENT_CLOSED)
        )
    # aiohttp decoding a form or text body in the charset it names (UTF-8 if none):
    # codecs raises LookupError itself, exactly, for a charset it does not know.
    if isinstance(exc, UnicodeDecodeError) or type(exc) is LookupError:
        return error_response(
            InvalidRequest("the request body is not valid text in its charset", status=400)
        )
    log.exception("unhandled_error", action=action)
    return error_response(CpisError("the request could not be completed"))


async def _audit(request: web.Request, ri: RequestInfo, status: int) -> None:
    services = request.app[SERVICES]
    p = ri.principal
    entry = AuditEntry(
        action=ri.action,
        outcome=status,
        client_id=p.client_id if p else None,
        role=p.role.value if p else None,
        # Only what was checked: a header naming an organisation is recorded when the
        # authenticated client may act for it (cpis.web.auth.authenticate), never raw,
        # so nothing a client writes (undecodable bytes included) can lose the line.
        org_ods=verified_org(request, p) if p else None,
        resource=request.match_info.route.resource.canonical
        if request.match_info.route.resource
        else None,
        trace_id=ri.trace_id,
        detail={"method": request.method},
    )
    try:
        await services.db.append_audit(entry, services.clock.now())
    except Exception:
        services.metrics.audit_failures.inc()
        log.error("audit_write_failed", action=ri.action, status=status)
