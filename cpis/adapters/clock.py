"""The real clock: UTC instants, and "today" as it is in England."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

_LONDON = ZoneInfo("Europe/London")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def today(self) -> date:
        return datetime.now(_LONDON).date()
