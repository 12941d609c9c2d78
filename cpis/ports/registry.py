"""What the operator registers (SPEC §6, §7): the local authorities (their details and
MESH mailbox), the health organisations lookups are made from, and the client
systems that may call. Read by the use cases through
:class:`~cpis.ports.plans.PlanStore` and :class:`~cpis.ports.tokens.ClientRegistry`;
written only by ``cpis la`` and ``cpis client`` (and the demo's seed).
"""

from __future__ import annotations

from typing import Protocol

from cpis.model import Client, LocalAuthority, Organisation
from cpis.model.la import MeshMailbox
from cpis.ports.tokens import ClientRegistry


class Registry(ClientRegistry, Protocol):
    async def upsert_la(self, la: LocalAuthority) -> None:
        """Store an LA's details (checked with :func:`cpis.la_details.checked_la`)."""

    async def update_la(
        self,
        ods_code: str,
        *,
        name: str | None = None,
        office_phone: str | None = None,
        edt_phone: str | None = None,
        repeat_window_hours: int | None = None,
        expected_version: int | None = None,
    ) -> LocalAuthority | None:
        """Change only the details given (each checked); None when no such LA is
        registered, or (``expected_version`` given) its version is another."""

    async def set_la_mesh(self, la_ods: str, mailbox: str, workflow_id: str) -> None:
        """Send the LA's notifications to this MESH mailbox too."""

    async def get_la_mesh(self, la_ods: str) -> MeshMailbox | None: ...

    async def clear_la_mesh(self, la_ods: str) -> bool:
        """Stop sending the LA's notifications to MESH; False if it had no mailbox."""

    async def upsert_organisation(self, org: Organisation) -> None: ...

    async def upsert_client(self, client: Client) -> None: ...

    async def set_client_active(self, client_id: str, *, active: bool) -> bool:
        """False when there is no such client."""
