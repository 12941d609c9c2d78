"""An LA's past uploads (issue 12): every applied file with its sequence, when it came,
its file code and how many records got each code; and one file's acknowledgement,
record by record, with each CPR code and reason.

Only applied files are kept (SPEC §5: a file refused whole, CPF01 or a lower
sequence, changed nothing and was answered at once). Every call is for the
acting LA's own files; another LA's sequence number is one that does not exist.
"""

from __future__ import annotations

from cpis.errors import InvalidRequest, NotFound
from cpis.model.la import LaActor, UploadSummary
from cpis.model.uploads import Acknowledgement
from cpis.ports.database import Database

MAX_PAGE = 200


async def uploads(
    db: Database, *, actor: LaActor, before: int | None = None, limit: int = 50
) -> list[UploadSummary]:
    """The LA's applied files, highest sequence first; ``before`` pages on (the lowest
    sequence of the page before)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be 1 to {MAX_PAGE}", expression="limit", status=400)
    async with db.transaction() as tx:
        return list(await tx.list_uploads(actor.la_ods, before=before, limit=limit))


async def upload(db: Database, *, actor: LaActor, sequence: int) -> Acknowledgement:
    """The acknowledgement the LA's file ``sequence`` got (every record's code and
    reason), or NotFound."""
    async with db.transaction() as tx:
        ack = await tx.upload_acknowledgement(actor.la_ods, sequence)
    if ack is None:
        raise NotFound("no upload with that sequence number")
    return ack
