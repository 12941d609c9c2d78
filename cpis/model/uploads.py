"""Batch uploads (SPEC §5): a parsed file, each record's outcome, the file's
acknowledgement, and the MESH message a file may arrive in.

The codes are CP-IS's: a file is CPF01 (malformed, nothing applied), CPF02 (all
applied), CPF03 (some), CPF04 (none) or CPF05 (person index unavailable); a
record is CPR06 when applied, else CPR01-05 or CPR07 saying why not.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple

from cpis.model import PlanFields

FileCode = Literal["CPF01", "CPF02", "CPF03", "CPF04", "CPF05"]
# Why a record was not applied (CPR06, applied, is only ever an acknowledgement's).
RecordCode = Literal["CPR01", "CPR02", "CPR03", "CPR04", "CPR05", "CPR07"]
AcknowledgedCode = RecordCode | Literal["CPR06"]
Form = Literal["json", "csv"]


class RecordAction(enum.StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


class RecordRejection(NamedTuple):
    """Why one record was not applied.

    ``new_nhs_number`` is set only for CPR05 (superseded): the acknowledgement
    gives the LA the number that replaced the one it sent.
    """

    code: RecordCode
    reason: str
    new_nhs_number: str | None = None


@dataclass(frozen=True, slots=True)
class FieldRejection:
    """The first bad plan field: ``field`` is None when it must not be named back."""

    code: RecordCode
    field: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class RecordResult:
    """One record's outcome.

    ``index`` is the record's 1-based position in a JSON file's ``records``, or
    the line of a CSV file it starts on, so an LA developer can find it.
    ``plan_id`` and ``action`` are None when the record's own were invalid.
    An accepted upsert has ``fields``; an accepted delete has neither.
    """

    index: int
    plan_id: str | None
    action: RecordAction | None
    fields: PlanFields | None = None
    rejection: RecordRejection | None = None

    @property
    def accepted(self) -> bool:
        return self.rejection is None


@dataclass(frozen=True, slots=True)
class UploadFile:
    """An upload file as it arrived, whichever way: its bytes, what the channel says of
    its form (a media type, a file name; either may be missing, and the parser then
    looks at the bytes), and the ODS codes of the LAs its sender may upload for: the
    principal's over HTTP, the mailbox's LAs over MESH, None at the command line,
    where the operator may upload for any."""

    data: bytes = field(repr=False)  # carries NHS numbers and names
    content_type: str | None = None
    filename: str | None = None
    may_upload_for: Collection[str] | None = None


@dataclass(frozen=True, slots=True)
class ParsedUpload:
    """A well-formed file: its header and one result per record, in file order."""

    la_ods: str
    sequence: int
    created: datetime
    records: tuple[RecordResult, ...]
    form: Form = "json"


@dataclass(frozen=True, slots=True)
class UploadRejected:
    """The whole file is refused and nothing of it may be applied."""

    reason: str
    code: Literal["CPF01"] = "CPF01"


@dataclass(frozen=True, slots=True)
class RecordAcknowledgement:
    """What a file's acknowledgement says of one record: its number in the file, the
    LA's plan id and action (None when the record's own were invalid), and its code.

    ``reason`` says why a record was not applied; ``new_nhs_number`` is set only
    for CPR05, the number that replaced the one the LA sent. Nothing else about
    the child is ever in an acknowledgement.
    """

    record: int
    plan_id: str | None
    action: RecordAction | None
    code: AcknowledgedCode
    reason: str | None = None
    new_nhs_number: str | None = None


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """The answer to an upload file, the same over HTTP, MESH and the command line.

    Three shapes, by what happened to the file:

    - applied (CPF02, CPF03, or CPF04 when no record could be): ``la_ods``,
      ``sequence``, the file's ``created``, when it was ``received_at``, and one
      :class:`RecordAcknowledgement` per record, in file order; stored with the
      file, and given again when the same sequence is sent again;
    - refused before anything was applied (CPF04 for a lower sequence or an LA
      that is not registered, CPF05 when the person index cannot answer):
      ``la_ods``, ``sequence`` and a ``reason``, no records, nothing stored;
    - malformed (CPF01): only a ``reason``.

    Its JSON is :func:`cpis.formats.acknowledgement.acknowledgement_json`.
    """

    file_code: FileCode
    la_ods: str | None = None
    sequence: int | None = None
    created: datetime | None = None
    received_at: datetime | None = None
    reason: str | None = None
    records: tuple[RecordAcknowledgement, ...] = ()

    @property
    def summary(self) -> dict[str, int]:
        """How many records got each code, by code."""
        return dict(sorted(Counter(r.code for r in self.records).items()))


@dataclass(frozen=True, slots=True)
class MeshMessage:
    """One message downloaded from a MESH inbox, chunks joined and decompressed.

    ``message_type`` is ``DATA`` for a message a sender posted and ``REPORT``
    for a MESH report (e.g. a non-delivery report), which has no body.
    """

    id: str
    sender: str | None
    workflow_id: str | None
    subject: str | None = field(repr=False)  # the sender's free text
    local_id: str | None
    filename: str | None
    body: bytes = field(repr=False)  # carries an NHS number
    message_type: str = "DATA"
    content_type: str | None = None
