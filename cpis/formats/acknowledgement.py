"""An upload's acknowledgement as JSON: what ``POST /la/v1/uploads`` answers, what the
MESH worker sends back, what ``cpis upload --ack`` writes, and what is stored with
an applied file so that sending it again gets the same answer.

The shape is documented for LA developers in ``schemas/uploads.md``; the value
is :class:`cpis.model.uploads.Acknowledgement`. Keys are written in one order
for each of its three shapes::

    applied:   la_ods, sequence, created, received_at, file_code, summary, records
    refused:   la_ods, sequence, file_code, reason, records (empty)
    malformed: file_code, reason, records (empty)

and each record as ``record, plan_id, action, code`` then ``reason`` and
``new_nhs_number`` when it has them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from cpis.model import JsonValue
from cpis.model.uploads import (
    AcknowledgedCode,
    Acknowledgement,
    FileCode,
    RecordAcknowledgement,
    RecordAction,
)


def acknowledgement_json(ack: Acknowledgement) -> dict[str, JsonValue]:
    """``ack`` as the JSON object every channel sends (see the module docstring)."""
    doc: dict[str, JsonValue] = {}
    if ack.la_ods is not None:
        doc |= {"la_ods": ack.la_ods, "sequence": ack.sequence}
    if ack.received_at is not None:
        doc |= {
            "created": None if ack.created is None else ack.created.isoformat(),
            "received_at": ack.received_at.isoformat(),
            "file_code": ack.file_code,
            "summary": ack.summary,
        }
    else:
        doc |= {"file_code": ack.file_code, "reason": ack.reason}
    doc["records"] = [_record_json(r) for r in ack.records]
    return doc


def _record_json(rec: RecordAcknowledgement) -> dict[str, JsonValue]:
    doc: dict[str, JsonValue] = {
        "record": rec.record,
        "plan_id": rec.plan_id,
        "action": None if rec.action is None else rec.action.value,
        "code": rec.code,
    }
    if rec.reason is not None:
        doc["reason"] = rec.reason
    if rec.new_nhs_number is not None:
        doc["new_nhs_number"] = rec.new_nhs_number
    return doc


def parse_acknowledgement(doc: Mapping[str, Any]) -> Acknowledgement:
    """The value :func:`acknowledgement_json` wrote (as stored with an applied file)."""
    created = doc.get("created")
    received_at = doc.get("received_at")
    return Acknowledgement(
        file_code=cast(FileCode, doc["file_code"]),
        la_ods=doc.get("la_ods"),
        sequence=doc.get("sequence"),
        created=None if created is None else datetime.fromisoformat(created),
        received_at=None if received_at is None else datetime.fromisoformat(received_at),
        reason=doc.get("reason"),
        records=tuple(_record(r) for r in doc.get("records") or ()),
    )


def _record(doc: Mapping[str, Any]) -> RecordAcknowledgement:
    action = doc.get("action")
    return RecordAcknowledgement(
        record=doc["record"],
        plan_id=doc.get("plan_id"),
        action=None if action is None else RecordAction(action),
        code=cast(AcknowledgedCode, doc["code"]),
        reason=doc.get("reason"),
        new_nhs_number=doc.get("new_nhs_number"),
    )
