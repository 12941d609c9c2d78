"""Batch uploads from LA case management systems (SPEC §5).

Pure code: parsing here, applying in ``cpis.services``, transport in ``cpis.web``
and the MESH worker. The file format is documented in ``schemas/uploads.md``.
"""

from __future__ import annotations

from cpis.uploads.parse import (
    CSV_COLUMNS,
    DEFAULT_MAX_RECORDS,
    PLAN_FIELDS,
    FieldRejection,
    ParsedUpload,
    RecordAction,
    RecordRejection,
    RecordResult,
    UploadRejected,
    check_plan_fields,
    parse_upload,
    safe_field_name,
)

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_MAX_RECORDS",
    "PLAN_FIELDS",
    "FieldRejection",
    "ParsedUpload",
    "RecordAction",
    "RecordRejection",
    "RecordResult",
    "UploadRejected",
    "check_plan_fields",
    "parse_upload",
    "safe_field_name",
]
