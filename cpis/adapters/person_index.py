"""Person index adapters (issue 4): which one ``CPIS_PERSON_INDEX`` names.

``none`` (NHS numbers checked by their check digit only), ``local`` (a table
loaded from a PDS extract: :class:`cpis.adapters.postgres.LocalPersonIndex`) or
``pds`` (PDS itself, over FHIR: :class:`cpis.adapters.pds.PdsPersonIndex`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from cpis.adapters.crypto import FieldVault
from cpis.adapters.pds import PdsPersonIndex
from cpis.adapters.postgres import LocalPersonIndex, Pool
from cpis.ports.person_index import PersonIndex
from cpis.settings import Settings


@asynccontextmanager
async def open_person_index(
    settings: Settings, pool: Pool, vault: FieldVault
) -> AsyncIterator[PersonIndex | None]:
    """The configured index, or None for ``none`` (NHS numbers checked by check digit only)."""
    if settings.person_index == "none":
        yield None
    elif settings.person_index == "local":
        yield LocalPersonIndex(pool, vault)
    elif settings.person_index == "pds":
        if settings.pds_url is None:
            raise ValueError("CPIS_PERSON_INDEX=pds needs CPIS_PDS_URL")
        async with aiohttp.ClientSession(headers={"User-Agent": "cpis"}) as session:
            yield PdsPersonIndex(
                settings.pds_url,
                session=session,
                timeout_seconds=settings.pds_timeout_seconds,
                concurrency=settings.pds_concurrency,
                token=None if settings.pds_token is None else settings.pds_token.reveal(),
            )
    else:
        raise ValueError(f"unknown person index: {settings.person_index}")
