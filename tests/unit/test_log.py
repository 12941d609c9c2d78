"""Log lines carry no personal data, tracebacks included."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from cpis.errors import InvalidRequest
from cpis.log import configure_logging

SECRETS = ("Secretname", "2016-07-14", "9990000018", "999 000 0018")


def _lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_a_librarys_exception_message_is_dropped_its_frames_and_type_kept(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(fmt="json")
    log = structlog.get_logger("cpis")
    try:
        try:
            {}["Secretname"]
        except KeyError as exc:
            raise ValueError("bad birth date 2016-07-14 for 9990000018") from exc
    except ValueError:
        log.exception("something_failed", la="XLA01")
    (line,) = _lines(capsys.readouterr().err)
    assert line["event"] == "something_failed" and line["la"] == "XLA01"
    text = str(line["exception"])
    assert "KeyError" in text and "ValueError" in text
    assert "test_a_librarys_exception_message_is_dropped" in text  # the frame
    for secret in SECRETS:
        assert secret not in text


def test_the_services_own_error_messages_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="json")
    try:
        raise InvalidRequest("end_date is before start_date", expression="end_date")
    except InvalidRequest:
        structlog.get_logger("cpis").exception("request_failed")
    (line,) = _lines(capsys.readouterr().err)
    assert "InvalidRequest: end_date is before start_date" in str(line["exception"])


def test_stdlib_loggers_tracebacks_are_cleaned_too(capsys: pytest.CaptureFixture[str]) -> None:
    """aiohttp and asyncpg log through the standard library."""
    configure_logging(fmt="json")
    try:
        raise RuntimeError("Secretname 999 000 0018")
    except RuntimeError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    (line,) = _lines(capsys.readouterr().err)
    assert "RuntimeError" in str(line["exception"])
    for secret in SECRETS:
        assert secret not in json.dumps(line)
