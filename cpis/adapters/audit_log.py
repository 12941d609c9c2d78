"""The security audit log's seals: made, signed, exported, and checked by ``cpis audit verify``.

Requests only insert their line (``audit_append``); every second ``serve``
seals the lines of the transactions that have finished since the last seal
as one batch (cpis/schema/functions/audit_seal_next.sql). Hashes alone made that
chain tamper-evident only to someone who could not recompute it: a database
superuser could edit a line and recompute every later seal, or delete the
newest batch, and the chain still checked (issue 9, item 3). So:

**Signed seals.** Each seal's ``hash`` is SHA-256 over :meth:`Seal.text`:
the batch number, its transaction-id range, its line count and seq range,
the hash of its lines' text (``rows_hash``, computed by the database), its
seq accounting (below), the previous seal's hash, when it was sealed and the
id of the key that signs it. The service signs that hash with its audit key,
an Ed25519 key from ``CPIS_KEYS_AUDIT`` or the keys directory
(:mod:`cpis.adapters.keys`), which the database never holds; only its public
part is needed to check. Rotation keeps every old public key, since seals
never expire.

**Exported anchors.** Each seal is logged (``audit_sealed``: batch, seq range,
line count, hash, key id: no personal data) and, when the service has a data
directory, written to ``audit-anchor.json`` there. Either is an anchor: an
operator who keeps one off the box can later ask ``cpis audit verify
--anchor`` whether the chain still holds it. Signatures stop a rewrite;
only an anchor kept elsewhere stops a cut: deleting the newest batches
leaves a shorter chain whose every seal still verifies. The hash is shown
in groups of eight hex digits joined by ``_`` (:func:`show_hash`), so the
log's NHS-number mask, which blanks any ten digits in a row, can never take
a piece of it.

**Continuous seq.** ``audit_log.seq`` comes from a sequence, so a line's
transaction that rolls back leaves a hole. Each seal says up to which seq
every number is accounted for (``seq_final``) and which numbers in that span
never had a line (``seq_void``), worked out by the database only once no
running transaction can still hold them (``audit_seal_next`` says how). A
line removed or renumbered after sealing, or slipped in under a number
already accounted for, therefore shows as a break, named by its seq.

**What verify checks**, in one repeatable-read snapshot after sealing what is
pending: batches numbered 1, 2, 3… with none missing; each chained to the one
before by hash and by transaction range; each seal's hash recomputed and its
signature checked with a known public key; each batch's lines recomputed
(count, seq range, hash); every seq up to the last ``seq_final`` either a
sealed line or declared void, and none both; no line after the last seal but
those of transactions still too recent to seal (a line with a transaction id
that was never issued cannot be pending); and, when given an anchor, that the
chain holds it. It reports lines, batches, the first and last seq and time,
the voids, what is pending, and the last seal's hash: the next anchor.

What none of this can show: a line deleted in the second or so before it is
sealed looks exactly like a rolled-back transaction (a void), and a
superuser who also holds the audit key can do anything. The voids are
counted in the report so an unusual number stands out.

Here: a seal's format and signature, anchors, and the report. The database's
side, sealing and checking, is :class:`cpis.adapters.postgres.PgAuditLog`.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from cpis.adapters.keys import audit_key_id

log = structlog.get_logger("cpis.audit")

ANCHOR_FILE = "audit-anchor.json"
SEAL_FORMAT = "cpis-audit-seal/1"
_SIGNED_PREFIX = b"cpis audit seal\x00"

AuditKeys = Mapping[str, ed25519.Ed25519PublicKey]


def show_hash(digest: bytes) -> str:
    """A hash as operators see it: hex in groups of eight joined by ``_``.

    No run of digits is long enough for the log's NHS-number mask, and ``_``
    keeps it one word to double-click and copy.
    """
    text = digest.hex()
    return "_".join(text[i : i + 8] for i in range(0, len(text), 8))


@dataclass(frozen=True, slots=True)
class Anchor:
    """A seal's hash an operator kept, and the batch it belonged to when known."""

    hash: bytes
    batch: int | None = None

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """``[BATCH:]HASH``, the hash in hex with or without ``_`` between groups."""
        batch_text, sep, hash_text = text.strip().rpartition(":")
        digits = re.sub(r"[_\s]", "", hash_text).lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digits):
            raise ValueError("an anchor is a seal's hash: 64 hex digits, optionally BATCH: first")
        batch = None
        if sep:
            if not batch_text.isdigit():
                raise ValueError("an anchor's batch is a whole number")
            batch = int(batch_text)
        return cls(bytes.fromhex(digits), batch)

    @classmethod
    def from_file(cls, path: Path) -> Anchor:
        """The anchor in a file the service wrote (``audit-anchor.json``) or a bare anchor."""
        raw = path.read_text(encoding="utf-8")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return cls.parse(raw)
        if not isinstance(data, dict) or not isinstance(data.get("hash"), str):
            raise ValueError("not an audit anchor file")
        batch = data.get("batch")
        return cls(cls.parse(data["hash"]).hash, batch if isinstance(batch, int) else None)

    def __str__(self) -> str:
        shown = show_hash(self.hash)
        return shown if self.batch is None else f"{self.batch}:{shown}"


@dataclass(frozen=True, slots=True)
class Seal:
    """One seal's content, as signed (see the module docstring)."""

    batch: int
    xid_lo: int
    xid_hi: int
    rows: int
    # None for a seal of no lines, which only moves seq_final on
    first_seq: int | None
    last_seq: int | None
    rows_hash: bytes
    seq_final: int
    seq_void: tuple[int, ...]  # inclusive [from, to] pairs, flattened
    seq_ceiling: int
    xid_ceiling: int
    prev_hash: bytes
    sealed_at: datetime
    key_id: str

    def text(self) -> bytes:
        """The canonical text the seal's hash covers: one ``name=value`` per line."""
        at = self.sealed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lines = [
            SEAL_FORMAT,
            f"batch={self.batch}",
            f"xid_lo={self.xid_lo}",
            f"xid_hi={self.xid_hi}",
            f"rows={self.rows}",
            f"first_seq={'' if self.first_seq is None else self.first_seq}",
            f"last_seq={'' if self.last_seq is None else self.last_seq}",
            f"rows_hash={self.rows_hash.hex()}",
            f"seq_final={self.seq_final}",
            f"seq_void={','.join(map(str, self.seq_void))}",
            f"seq_ceiling={self.seq_ceiling}",
            f"xid_ceiling={self.xid_ceiling}",
            f"prev_hash={self.prev_hash.hex()}",
            f"sealed_at={at}",
            f"key_id={self.key_id}",
        ]
        return "\n".join(lines).encode("ascii")

    def digest(self) -> bytes:
        return hashlib.sha256(self.text()).digest()

    @property
    def void_count(self) -> int:
        pairs = zip(self.seq_void[::2], self.seq_void[1::2], strict=True)
        return sum(hi - lo + 1 for lo, hi in pairs)


def sign_seal(seal: Seal, key: ed25519.Ed25519PrivateKey) -> tuple[bytes, bytes]:
    """The seal's hash and the audit key's signature of it."""
    digest = seal.digest()
    return digest, key.sign(_SIGNED_PREFIX + digest)


def signature_holds(digest: bytes, signature: bytes, key: ed25519.Ed25519PublicKey) -> bool:
    try:
        key.verify(signature, _SIGNED_PREFIX + digest)
    except InvalidSignature:
        return False
    return True


@dataclass(slots=True)
class AuditReport:
    """What ``verify`` checked, and the first thing it found wrong (``problem``)."""

    rows: int = 0
    batches: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_at: datetime | None = None
    last_at: datetime | None = None
    # seq numbers up to seq_final that never had a line (rolled back, or skipped)
    void: int = 0
    seq_final: int = 0
    last_batch: int = 0
    last_hash: bytes | None = None
    pending: int = 0
    key_ids: set[str] = field(default_factory=set)
    anchor: Anchor | None = None
    anchor_found: bool = False
    problem: str | None = None
    # the batch (and seq, where one can be named) where the chain stops holding
    broken_batch: int | None = None
    broken_seq: int | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None

    def fail(self, problem: str, *, batch: int | None = None, seq: int | None = None) -> None:
        if self.problem is None:
            self.problem, self.broken_batch, self.broken_seq = problem, batch, seq

    @property
    def last_anchor(self) -> Anchor | None:
        """The newest seal checked: the anchor to keep for next time (when intact)."""
        return None if self.last_hash is None else Anchor(self.last_hash, self.last_batch)

    def lines(self) -> list[str]:
        """The report as ``cpis audit verify`` prints it."""
        out: list[str] = []
        if self.batches:
            out.append(
                f"checked {self.rows} lines in {self.batches} batches:"
                f" seq {self.first_seq} to {self.last_seq},"
                f" {_time(self.first_at)} to {_time(self.last_at)}"
            )
            out.append(
                f"every seq up to {self.seq_final} accounted for;"
                f" {self.void} never written (rolled back, or skipped by the sequence)"
            )
            out.append(f"seals signed by audit keys {', '.join(sorted(self.key_ids))}")
        else:
            out.append("no sealed lines yet")
        out.append(f"pending (too recent to seal): {self.pending} lines")
        if self.anchor is not None and self.anchor_found:
            out.append(f"the anchor is in the chain, at batch {self.anchor.batch}")
        if self.intact and self.last_anchor is not None:
            out.append(f"last seal (keep it as the next anchor): {self.last_anchor}")
        return out


def _time(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def export_anchor(seal: Seal, digest: bytes, *, full: bool, anchor_file: Path | None) -> None:
    """The seal's anchor, outside the database: a log line, and the anchor file."""
    log.info(
        "audit_sealed",
        batch=seal.batch,
        first_seq=seal.first_seq,
        last_seq=seal.last_seq,
        rows=seal.rows,
        seq_final=seal.seq_final,
        void=seal.void_count,
        hash=show_hash(digest),
        key_id=seal.key_id,
        backlog=full,
    )
    if anchor_file is None:
        return
    body = {
        "batch": seal.batch,
        "hash": show_hash(digest),
        "first_seq": seal.first_seq,
        "last_seq": seal.last_seq,
        "seq_final": seal.seq_final,
        "sealed_at": _time(seal.sealed_at),
        "key_id": seal.key_id,
    }
    try:
        _write_atomically(anchor_file, orjson.dumps(body, option=orjson.OPT_INDENT_2))
    except OSError as exc:
        # The seal stands and its log line carries the same anchor.
        log.warning("audit_anchor_not_written", path=str(anchor_file), error=exc.strerror)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def public_keys_of(keys: Sequence[ed25519.Ed25519PublicKey]) -> AuditKeys:
    """Public keys by the id seals name them by."""
    return {audit_key_id(k): k for k in keys}
