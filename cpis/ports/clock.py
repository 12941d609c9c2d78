"""The time, as the service reads it (tests pass a clock they move by hand)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC now."""

    def today(self) -> date:
        """Today's date in England."""
