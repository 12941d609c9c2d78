"""Person index adapters (issue 4): ``none``, ``local`` (PostgreSQL) and ``pds``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from cpis.adapters.crypto import FieldVault
from cpis.ports import PersonIndex
from cpis.settings import Settings


@asynccontextmanager
async def open_person_index(
    settings: Settings, pool: asyncpg.Pool, vault: FieldVault
) -> AsyncIterator[PersonIndex | None]:
    """The configured index, or None for ``none`` (NHS numbers checked by check digit only)."""
    if settings.person_index == "none":
        yield None
        return
    raise NotImplementedError(settings.person_index)
