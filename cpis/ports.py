"""The ports the services and the web layer depend on.

Adapters (``cpis/adapters``) implement them; ``app.py`` wires real ones and the
tests wire real ones too (PostgreSQL is always real) or small fakes of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime
from typing import Any, Protocol

from cpis.model import (
    AccessEvent,
    Accessor,
    AuditEntry,
    Client,
    LocalAuthority,
    Organisation,
    Plan,
    PlanFields,
    Principal,
    StoredAccessEvent,
)
from cpis.model.persons import IndexPerson, PersonQuery
from cpis.model.uploads import Acknowledgement


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC now."""

    def today(self) -> date:
        """Today's date in England."""


class Vault(Protocol):
    """Keyed hashing and field encryption for personal data at rest (SPEC §6)."""

    def subject_key(self, nhs_number: str) -> bytes:
        """The keyed hash under which a subject's rows are found."""

    def seal(self, purpose: str, value: str) -> bytes:
        """Encrypt ``value``; the key id travels inside the result."""

    def seal_many(self, purpose: str, values: Sequence[str | None]) -> list[bytes | None]:
        """:meth:`seal` for each value (None stays None), for bulk writes."""

    def open(self, purpose: str, sealed: bytes) -> str:
        """Decrypt what :meth:`seal` made, with whichever key id it names."""

    def blind(self, purpose: str, value: str) -> bytes:
        """A keyed hash of ``value`` for equality lookups (a "blind index").

        Deterministic, so it can be indexed; different for each ``purpose``, so
        a hash made for one column never matches another's (or a subject key).
        """


class Transaction(Protocol):
    """One database transaction; everything done through it commits together."""

    async def visible_plan_rows(self, nhs_number: str) -> Sequence[tuple[Plan, LocalAuthority]]:
        """Every stored plan for the subject with its LA (visibility is the caller's rule)."""

    async def record_access(
        self,
        nhs_number: str,
        accessor: Accessor,
        la_codes: Sequence[str],
        at: datetime,
        plan_ids: Mapping[str, Sequence[str]],
        audit: AuditEntry,
        based_on: Sequence[Plan],
    ) -> tuple[AccessEvent, tuple[str, ...]] | None:
        """Store one access event, one outbox row per LA not inside its repeat window,
        and the request's audit line, serialised with other lookups of the subject.

        ``based_on`` is every plan the caller read for the subject: if the stored
        plans are no longer exactly those (same ids and versions), nothing is
        written and None is returned, so the caller can read again.
        ``plan_ids`` maps each LA to its own plan ids, carried in the notification.
        Returns the event and the LA codes that were queued a notification.
        """

    async def access_history(
        self, nhs_number: str, limit: int, *, la_codes: Sequence[str] | None = None
    ) -> Sequence[StoredAccessEvent]:
        """The most recent non-repeat access events for the subject, newest first; with
        ``la_codes``, only those recorded while one of these LAs had a visible plan."""

    async def get_access_event(self, event_id: uuid.UUID) -> StoredAccessEvent | None: ...

    async def access_events_by_viewer(
        self, practitioner_role_id: uuid.UUID, limit: int
    ) -> Sequence[StoredAccessEvent]:
        """The most recent access events whose viewer has this PractitionerRole id."""

    async def get_plan(self, la_ods: str, la_plan_id: str) -> Plan | None: ...

    async def get_plan_by_id(
        self, plan_id: uuid.UUID, version: int | None = None
    ) -> tuple[Plan, LocalAuthority] | None: ...

    async def put_plan(
        self, la_ods: str, la_plan_id: str, fields: PlanFields, at: datetime
    ) -> tuple[Plan, bool]:
        """Create or replace; returns the new version and whether it was created."""

    async def delete_plan(self, la_ods: str, la_plan_id: str) -> bool:
        """Remove a plan and its history for good (entered in error)."""

    async def delete_plans(self, la_ods: str, la_plan_ids: Sequence[str]) -> frozenset[str]:
        """``delete_plan`` for each at once; returns the plan ids that existed."""

    async def put_plans(
        self,
        la_ods: str,
        plans: Sequence[tuple[str, PlanFields]],
        at: datetime,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Store ``(la_plan_id, fields)`` pairs as ``put_plan`` would one by one, in order.

        A plan id given k times gets k new versions, the last one current.
        ``progress`` is told how many pairs have been dealt with, every few thousand.
        """

    async def get_la(self, ods_code: str) -> LocalAuthority | None: ...

    async def lock_uploads(self, la_ods: str) -> None:
        """Serialise uploads of one LA until commit (sequence numbers are per LA)."""

    async def upload_acknowledgement(self, la_ods: str, sequence: int) -> Acknowledgement | None:
        """The acknowledgement stored for that file, if it was applied before."""

    async def last_upload_sequence(self, la_ods: str) -> int | None: ...

    async def store_upload(
        self, la_ods: str, sequence: int, file_code: str, ack: Acknowledgement, at: datetime
    ) -> None:
        """Keep the acknowledgement of an applied file; any ``new_nhs_number`` is sealed."""

    async def get_organisation(self, ods_code: str) -> Organisation | None: ...

    async def append_audit(self, entry: AuditEntry, at: datetime) -> None: ...


class Database(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    def connection(self) -> AbstractAsyncContextManager[Transaction]:
        """The same operations, each statement committing on its own (fewer round trips)."""

    async def append_audit(self, entry: AuditEntry, at: datetime) -> None:
        """Audit outside any other work (failed requests, token exchanges)."""

    async def get_client(self, client_id: str) -> Client | None: ...

    async def use_jti(self, client_id: str, jti: str, expires_at: datetime) -> bool:
        """Record a client assertion's jti; False if it was seen before."""

    async def ping(self) -> bool: ...

    async def migrations_current(self) -> bool: ...


class PersonIndex(Protocol):
    """The role PDS plays nationally (SPEC §5 CPR01/02/03/05, issue 4).

    Adapters raise :class:`cpis.errors.PersonIndexUnavailable` when the index
    cannot answer (an upload then gets CPF05 and changes nothing).
    """

    name: str

    async def get_many(self, nhs_numbers: Sequence[str]) -> Mapping[str, IndexPerson]:
        """The index's record for each number it knows; unknown numbers are absent."""

    async def search(self, query: PersonQuery, *, limit: int = 10) -> Sequence[IndexPerson]:
        """Candidates for tracing: people who plausibly match ``query`` (blocking only;
        the caller decides with :mod:`cpis.matching`)."""


class TokenAuthority(Protocol):
    """Issues and checks the service's access tokens (SPEC §6)."""

    async def exchange(self, assertion: str, *, client: Client, token_url: str) -> str:
        """Check a client assertion (already matched to ``client``) and issue a token.

        Raises :class:`cpis.errors.Unauthenticated` on any fault.
        """

    async def exchange_id_token(
        self, assertion: str, *, id_token: str, client: Client, token_url: str
    ) -> str:
        """Token exchange (RFC 8693): a client assertion and its user's ID token for a
        user-restricted token. Raises :class:`cpis.errors.Unauthenticated` for the
        assertion, :class:`cpis.errors.InvalidGrant` for the ID token,
        :class:`cpis.errors.Forbidden` for a client that may not exchange, and
        :class:`cpis.errors.Unavailable` when the identity provider cannot be reached.
        """

    def verify(self, token: str) -> Principal:
        """Check an access token; raises :class:`cpis.errors.Unauthenticated`."""

    def public_jwks(self) -> dict[str, Any]: ...
