"""Time-ordered UUIDs (RFC 9562 version 7) for rows written on every lookup.

Random (version 4) keys scatter index inserts across the whole b-tree, so a
busy table dirties — and after each checkpoint writes in full to the WAL — a
different page per insert. Version 7 keys start with the time in
milliseconds, so new rows land at the right-hand edge of the index.
"""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
    return uuid.UUID(int=value)
