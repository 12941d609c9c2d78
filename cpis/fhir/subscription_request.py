"""Checking an incoming ``Subscription`` (Subscriptions R5 Backport IG, R4 form).

What an LA's system may ask for, and every way it can be refused, with an
OperationOutcome that names the element and never echoes a value. The
resources themselves are built in :mod:`cpis.fhir.subscriptions`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cpis.errors import Forbidden, InvalidRequest
from cpis.fhir.resources import ODS_SYSTEM
from cpis.fhir.subscriptions import (
    CHANNEL_TYPE_EXT,
    DEFAULT_PAYLOAD,
    DEFAULT_TIMEOUT_SECONDS,
    FHIR_JSON,
    FILTER_EXT,
    FILTER_PARAMETER,
    HEARTBEAT_EXT,
    MAX_ENDPOINT_CHARS,
    MAX_HEADER_CHARS,
    MAX_HEADERS,
    MAX_HEARTBEAT_SECONDS,
    MAX_REASON_CHARS,
    MAX_TIMEOUT_SECONDS,
    MIN_HEARTBEAT_SECONDS,
    PAYLOAD_CONTENT_EXT,
    PAYLOADS,
    TIMEOUT_EXT,
    topic_url,
)
from cpis.model.notifications import Payload, SubscriptionRequest

# Headers the service sets itself on every notification request; a subscription
# may not override them (a forged signature header would defeat verification).
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "x-jws-signature",
    }
)
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# The fhirVersion MIME parameter's values for FHIR R4 (it names major.minor).
_FHIR_R4 = frozenset({"4.0", "4.0.1"})
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
_ODS = re.compile(r"^[A-Za-z0-9]{3,10}$")
# Pydantic reports a body's own keys back in its error locations; only keys
# that look like element names are echoed (a key could be an NHS number).
_ELEMENT = re.compile(r"^_?[A-Za-z][A-Za-z0-9]{0,63}$")


# --- validating what an LA sends -----------------------------------------------------------


def _fhir_structure(body: Mapping[str, Any]) -> None:
    """Element names, types and cardinality, by the R4B model (Subscription is as in R4)."""
    # Imported here: pydantic model classes are heavy and only this path needs them.
    import pydantic
    from fhir.resources.R4B.subscription import Subscription as R4BSubscription

    try:
        R4BSubscription.model_validate(dict(body))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"] if not isinstance(p, int)]
        if all(_ELEMENT.match(p) for p in loc):
            where = ".".join(["Subscription", *loc])
            raise InvalidRequest(f"{where}: {first['msg']}", expression=where, status=400) from None
        raise InvalidRequest("the body has an element that is not allowed", status=400) from None


def _extension(node: Any, url: str) -> Mapping[str, Any] | None:
    if not isinstance(node, Mapping):
        return None
    found = [e for e in node.get("extension", []) if isinstance(e, Mapping) and e.get("url") == url]
    if len(found) > 1:
        raise InvalidRequest(f"extension {url} appears more than once")
    return found[0] if found else None


def _check_filter(body: Mapping[str, Any], la_ods: str) -> None:
    ext = _extension(body.get("_criteria"), FILTER_EXT)
    if ext is None:
        return
    where = "Subscription.criteria.extension"
    raw = ext.get("valueString")
    if not isinstance(raw, str):
        raise InvalidRequest("the filter criteria must be a valueString", expression=where)
    text = raw.strip()
    text = text.removeprefix("AuditEvent?")
    name, sep, value = text.partition("=")
    if not sep or name != FILTER_PARAMETER:
        raise InvalidRequest(
            f"the only filter this topic supports is {FILTER_PARAMETER}=<ODS code>",
            expression=where,
        )
    value = value.removeprefix(f"{ODS_SYSTEM}|")
    if not _ODS.match(value):
        raise InvalidRequest("the local-authority filter must be an ODS code", expression=where)
    if value.upper() != la_ods.upper():
        raise Forbidden("a subscription may only be for the caller's own local authority")


def _check_endpoint(raw: Any) -> str:
    where = "Subscription.channel.endpoint"
    if not isinstance(raw, str) or not raw:
        raise InvalidRequest("channel.endpoint is required", expression=where)
    if len(raw) > MAX_ENDPOINT_CHARS:
        raise InvalidRequest("channel.endpoint is too long", expression=where)
    try:
        url = urlsplit(raw)
        host = url.hostname
        _ = url.port  # raises on a malformed port
    except ValueError:
        raise InvalidRequest("channel.endpoint is not a URL", expression=where) from None
    if not host or url.scheme not in ("https", "http"):
        raise InvalidRequest("channel.endpoint must be an https URL", expression=where)
    if url.scheme == "http" and host not in _LOCAL_HOSTS:
        # Notifications carry NHS numbers: plain http only to this machine, for testing.
        raise InvalidRequest(
            "channel.endpoint must be https (http only to 127.0.0.1, for local testing)",
            expression=where,
        )
    if url.username is not None or url.password is not None:
        raise InvalidRequest(
            "channel.endpoint may not carry credentials; use channel.header", expression=where
        )
    if url.fragment:
        raise InvalidRequest("channel.endpoint may not have a fragment", expression=where)
    return raw


def _check_headers(raw: Any) -> tuple[str, ...]:
    where = "Subscription.channel.header"
    if raw is None:
        return ()
    values = raw if isinstance(raw, list) else [raw]
    if len(values) > MAX_HEADERS:
        raise InvalidRequest(f"at most {MAX_HEADERS} channel.header values", expression=where)
    out = []
    for value in values:
        if not isinstance(value, str) or len(value) > MAX_HEADER_CHARS:
            raise InvalidRequest("each channel.header must be 'Name: value'", expression=where)
        name, sep, rest = value.partition(":")
        if not sep or not _HEADER_NAME.match(name.strip()) or name != name.strip():
            raise InvalidRequest("each channel.header must be 'Name: value'", expression=where)
        rest = rest.strip()
        if not rest or not rest.isprintable():
            raise InvalidRequest(
                "a channel.header value is empty or has characters not allowed", expression=where
            )
        if name.lower() in RESERVED_HEADERS:
            raise InvalidRequest(
                "channel.header may not set a header the service sets itself", expression=where
            )
        out.append(f"{name}: {rest}")
    return tuple(out)


def _unsigned(channel: Mapping[str, Any], url: str, element: str) -> int | None:
    ext = _extension(channel, url)
    if ext is None:
        return None
    value = ext.get("valueUnsignedInt")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(
            f"{element} must be a valueUnsignedInt", expression=f"Subscription.channel.{element}"
        )
    return value


def _check_payload(channel: Mapping[str, Any]) -> Payload:
    where = "Subscription.channel.payload"
    mime = channel.get("payload")
    ext = _extension(channel.get("_payload"), PAYLOAD_CONTENT_EXT)
    if mime is None:
        # R4: "omit for no payload".
        if ext is not None and ext.get("valueCode") != "empty":
            raise InvalidRequest("channel.payload is required for that content", expression=where)
        return "empty"
    if not isinstance(mime, str):
        raise InvalidRequest(f"channel.payload must be {FHIR_JSON}", expression=where)
    media, *params = (p.strip() for p in mime.split(";"))
    if media.lower() != FHIR_JSON:
        raise InvalidRequest(f"channel.payload must be {FHIR_JSON}", expression=where)
    # The IG (components, "Subscriptions and FHIR Versions"): a server SHALL look for
    # the fhirVersion MIME parameter and SHALL not accept a version it cannot send.
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "fhirversion" and value.strip().strip('"') not in _FHIR_R4:
            raise InvalidRequest(
                "notifications are sent in FHIR R4 only (fhirVersion=4.0)", expression=where
            )
    if ext is None:
        return DEFAULT_PAYLOAD
    code = ext.get("valueCode")
    for option in PAYLOADS:
        if code == option:
            return option
    raise InvalidRequest(
        "the payload content must be empty, id-only or full-resource", expression=where
    )


def _check_end(raw: Any, now: datetime) -> datetime | None:
    if raw is None:
        return None
    where = "Subscription.end"
    if not isinstance(raw, str):
        raise InvalidRequest("end must be an instant", expression=where)
    try:
        end = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest("end must be an instant", expression=where) from None
    if end.tzinfo is None:
        raise InvalidRequest("end must include a time zone", expression=where)
    try:
        # Stored in UTC: 9999-12-31T23:59:59-01:00 has no UTC datetime (issue 9, found by
        # probing the contract: it was a 500 from the database driver).
        end = end.astimezone(UTC)
    except OverflowError:
        raise InvalidRequest("end is out of range", expression=where) from None
    if end <= now:
        raise InvalidRequest("end is in the past", expression=where)
    return end


def parse_subscription(body: Any, *, base: str, la_ods: str, now: datetime) -> SubscriptionRequest:
    """Validate an LA's Subscription body, or raise naming the first bad element.

    Structure first (the R4B model: 400), then this service's rules (422),
    except a filter naming another LA (403). Messages never echo values: an
    endpoint or header may hold a secret.
    """
    if not isinstance(body, Mapping):
        raise InvalidRequest("the body must be a JSON object", status=400)
    if body.get("resourceType") != "Subscription":
        raise InvalidRequest(
            "the body must be a Subscription resource", expression="resourceType", status=400
        )
    _fhir_structure(body)
    status = body.get("status")
    if status not in ("requested", "active", "off"):
        raise InvalidRequest(
            "status must be requested (or off, to pause)", expression="Subscription.status"
        )
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRequest("reason is required", expression="Subscription.reason")
    if len(reason) > MAX_REASON_CHARS or not reason.isprintable():
        raise InvalidRequest(
            f"reason must be printable and at most {MAX_REASON_CHARS} characters",
            expression="Subscription.reason",
        )
    if body.get("criteria") != topic_url(base):
        raise InvalidRequest(
            f"criteria must be the topic canonical {topic_url(base)}",
            expression="Subscription.criteria",
        )
    _check_filter(body, la_ods)
    channel = body.get("channel")
    assert isinstance(channel, Mapping)  # the model requires it
    if channel.get("type") != "rest-hook":
        raise InvalidRequest(
            "channel.type must be rest-hook", expression="Subscription.channel.type"
        )
    # The IG's conformance page: a server "SHALL reject the subscription request if a
    # client requests an unsupported channel via this element" (backport-channel-type).
    if _extension(channel.get("_type"), CHANNEL_TYPE_EXT) is not None:
        raise InvalidRequest(
            "no channel types other than rest-hook are supported",
            expression="Subscription.channel.type",
        )
    endpoint = _check_endpoint(channel.get("endpoint"))
    headers = _check_headers(channel.get("header"))
    payload = _check_payload(channel)
    heartbeat = _unsigned(channel, HEARTBEAT_EXT, "heartbeatPeriod")
    if heartbeat == 0:
        heartbeat = None
    if heartbeat is not None and not MIN_HEARTBEAT_SECONDS <= heartbeat <= MAX_HEARTBEAT_SECONDS:
        raise InvalidRequest(
            f"the heartbeat period must be {MIN_HEARTBEAT_SECONDS}-{MAX_HEARTBEAT_SECONDS} s",
            expression="Subscription.channel.heartbeatPeriod",
        )
    timeout = _unsigned(channel, TIMEOUT_EXT, "timeout")
    if timeout is None:
        timeout = DEFAULT_TIMEOUT_SECONDS
    if not 1 <= timeout <= MAX_TIMEOUT_SECONDS:
        raise InvalidRequest(
            f"the timeout must be 1-{MAX_TIMEOUT_SECONDS} s",
            expression="Subscription.channel.timeout",
        )
    return SubscriptionRequest(
        status="off" if status == "off" else "requested",
        reason=reason.strip(),
        endpoint=endpoint,
        headers=headers,
        payload=payload,
        heartbeat_seconds=heartbeat,
        timeout_seconds=timeout,
        end_at=_check_end(body.get("end"), now),
    )
