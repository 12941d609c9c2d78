"""Upload files from the service's MESH inbox, acknowledgements back to the sender (SPEC §5).

Runs inside ``cpis serve`` and as ``cpis worker`` when a MESH mailbox is
configured. Every poll (once at start, then every ``poll_seconds``) reads each
message waiting in the inbox:

- only ``DATA`` messages with workflow id ``CPIS_UPLOAD`` are taken; any other
  message is left in the inbox for whoever handles it, and logged once;
- the sending mailbox must be registered to an LA (``cpis la mesh``) and the
  file must be for that LA, or the file gets CPF01 and changes nothing, as a
  file for another LA does over HTTP; an unregistered sender is told so
  (CPF01) where MESH lets us, and its message is acknowledged so that it does
  not come back at every poll;
- otherwise the file goes to :func:`cpis.services.uploads.receive`, as it does
  from ``POST /la/v1/uploads``, and the same acknowledgement goes back to the
  sender with workflow id ``CPIS_UPLOAD_ACK`` and the incoming message id as
  its local id.

The incoming message is acknowledged (removed from the inbox) only after the
acknowledgement was sent. A crash or a MESH failure in between leaves it in
the inbox, and the next poll deals with it again: applying is idempotent (a
sequence seen before returns its stored acknowledgement), so the LA gets the
same acknowledgement again, never a second application. If the database or
MESH is unavailable the message simply waits for the next poll.

Logs name message ids, mailboxes, LAs, sequences and codes, never a subject,
a local id or anything from a file: those may carry personal data.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson
import structlog

from cpis.errors import MeshError, Unavailable
from cpis.formats.acknowledgement import acknowledgement_json
from cpis.model.uploads import Acknowledgement, MeshMessage, UploadFile
from cpis.ports.clock import Clock
from cpis.ports.database import Database
from cpis.ports.person_index import PersonIndex
from cpis.ports.uploads import Mailbox, PollLock, Senders
from cpis.services import uploads

log = structlog.get_logger("cpis.mesh_uploads")

#: The workflow id an LA sends its upload files with.
UPLOAD_WORKFLOW = "CPIS_UPLOAD"
#: The workflow id acknowledgements are sent back with.
ACK_WORKFLOW = "CPIS_UPLOAD_ACK"

UNKNOWN_SENDER = (
    "the sending MESH mailbox is not registered to a local authority in CP-IS; "
    "ask the CP-IS service desk to register it"
)


@asynccontextmanager
async def _always() -> AsyncIterator[bool]:
    yield True


@dataclass(frozen=True, slots=True)
class MeshUploadSettings:
    poll_seconds: float = 60.0
    max_bytes: int = 67_108_864


class MeshUploads:
    def __init__(
        self,
        mailbox: Mailbox,
        senders: Senders,
        *,
        db: Database,
        clock: Clock,
        index: PersonIndex | None,
        settings: MeshUploadSettings = MeshUploadSettings(),
        lock: PollLock | None = None,
        on_file: Callable[[str], None] | None = None,
    ) -> None:
        self._mailbox = mailbox
        self._senders = senders
        self._db = db
        self._clock = clock
        self._index = index
        self._settings = settings
        self._lock = lock or _always
        self._on_file = on_file or (lambda file_code: None)
        # Messages left alone (another workflow, a report): logged once, not read again.
        self._ignored: set[str] = set()

    async def run(self) -> None:
        """Poll once now, then every ``poll_seconds``, until cancelled."""
        while True:
            try:
                await self.poll()
            except Exception:
                log.exception("mesh_upload_poll_failed")
            await asyncio.sleep(self._settings.poll_seconds)

    async def poll(self) -> int:
        """Deal with every upload waiting in the inbox; how many were acknowledged."""
        async with self._lock() as ours:
            if not ours:
                return 0
            try:
                ids = await self._mailbox.list_inbox()
            except MeshError as exc:
                log.warning("mesh_upload_deferred", reason=exc.reason)
                return 0
            self._ignored.intersection_update(ids)
            done = 0
            for message_id in ids:
                if message_id in self._ignored:
                    continue
                try:
                    if await self.take(message_id):
                        done += 1
                except Unavailable:
                    # The database is down: every other message would fail the same way.
                    log.warning(
                        "mesh_upload_deferred", message_id=message_id, reason="database unavailable"
                    )
                    break
                except MeshError as exc:
                    log.warning("mesh_upload_deferred", message_id=message_id, reason=exc.reason)
                except Exception:
                    # Left in the inbox for the next poll; the messages after it still go.
                    log.exception("mesh_upload_failed", message_id=message_id)
            return done

    async def take(self, message_id: str) -> bool:
        """Read, apply and answer one message; True when it was acknowledged."""
        message = await self._mailbox.read_message(message_id)
        if message.workflow_id != UPLOAD_WORKFLOW or message.message_type != "DATA":
            self._ignored.add(message_id)
            log.info(
                "mesh_message_ignored",
                message_id=message_id,
                workflow_id=message.workflow_id,
                message_type=message.message_type,
            )
            return False
        sender = (message.sender or "").strip().upper()
        las = await self._senders.local_authorities(sender) if sender else frozenset()
        if not las:
            await self._refuse_unknown_sender(message, sender)
            return True
        # The acknowledgement POST /la/v1/uploads would give this file from this LA:
        # CPF04 (lower sequence) and CPF05 (person index unavailable) included.
        file = UploadFile(
            message.body,
            content_type=message.content_type,
            filename=_file_name(message),
            may_upload_for=las,
        )
        ack = await uploads.receive(
            self._db,
            self._clock,
            file,
            index=self._index,
            max_bytes=self._settings.max_bytes,
        )
        await self._mailbox.send_message(
            recipient=sender,
            workflow_id=ACK_WORKFLOW,
            body=orjson.dumps(acknowledgement_json(ack)),
            subject=_subject(ack),
            local_id=message.id,
            filename=_ack_filename(ack, message.id),
            content_type="application/json",
        )
        await self._mailbox.acknowledge(message_id)
        log.info(
            "mesh_upload_acknowledged",
            message_id=message_id,
            sender=sender,
            la=ack.la_ods,
            sequence=ack.sequence,
            file_code=ack.file_code,
        )
        self._on_file(ack.file_code)
        return True

    async def _refuse_unknown_sender(self, message: MeshMessage, sender: str) -> None:
        log.warning("mesh_upload_unknown_sender", message_id=message.id, sender=sender or None)
        if sender:
            ack = uploads.refusal(UNKNOWN_SENDER)
            # Best effort: the sender may not even be a mailbox MESH lets us write to.
            try:
                await self._mailbox.send_message(
                    recipient=sender,
                    workflow_id=ACK_WORKFLOW,
                    body=orjson.dumps(acknowledgement_json(ack)),
                    subject=_subject(ack),
                    local_id=message.id,
                    filename=_ack_filename(ack, message.id),
                    content_type="application/json",
                )
            except MeshError as exc:
                log.warning("mesh_upload_reply_failed", message_id=message.id, reason=exc.reason)
        await self._mailbox.acknowledge(message.id)
        self._on_file("CPF01")


def _file_name(message: MeshMessage) -> str | None:
    """The name that says JSON or CSV: MESH's file name, else a subject naming a file."""
    for name in (message.filename, message.subject):
        if name and name.strip().lower().endswith((".json", ".csv")):
            return name.strip()
    return message.filename


def _subject(ack: Acknowledgement) -> str:
    # A file that did not parse has no LA or sequence; any other names both.
    code = ack.file_code
    if ack.la_ods is None:
        return f"CP-IS upload acknowledgement: {code}"
    return f"CP-IS upload acknowledgement {ack.la_ods} sequence {ack.sequence}: {code}"


def _ack_filename(ack: Acknowledgement, message_id: str) -> str:
    if ack.la_ods is None:
        return f"cpis-ack-{message_id}.json"
    return f"cpis-ack-{ack.la_ods}-{ack.sequence}.json"
