"""What the two fuzzers of the live service share (``test_openapi_fuzz``, ``test_fhir_fuzz``).

Both run Hypothesis in a worker thread while the service under test keeps
serving on the test's event loop, with one fixed seed and no example database,
so a run is the same run every time and a failure can be replayed.

Personal data: an error must never repeat a value that was sent (SPEC §4, §6).
The service writes words in only a few places: an OperationOutcome's
``diagnostics`` and ``expression``, an OAuth error's ``error_description``, an
acknowledgement's ``reason``s. :func:`message_texts` collects those, and a
check looks for what was sent in them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck

SEED = 20260309
# The generated inputs are cheap; the requests they make are what costs. A slow
# example is not a problem here, a flaky health check would be.
SUPPRESSED = [
    HealthCheck.too_slow,
    HealthCheck.filter_too_much,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
]
MESSAGE_KEYS = frozenset({"diagnostics", "expression", "error_description", "reason", "text"})
# Ten digits, as an NHS number is written (spaces or hyphens allowed after 3 and 6).
NHS_SHAPED = re.compile(r"(?<![0-9])[0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4}(?![0-9])")


def message_texts(body: Any) -> list[str]:
    """Every free-text message in a JSON answer (strings under :data:`MESSAGE_KEYS`)."""
    found: list[str] = []

    def walk(node: Any, key: str | None) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key in MESSAGE_KEYS:
            found.append(node)

    walk(body, None)
    return found


def nhs_shaped(text: str) -> Iterator[str]:
    """Each NHS-number-shaped run in ``text``, as its ten digits."""
    for match in NHS_SHAPED.finditer(text):
        yield re.sub(r"[ -]", "", match.group())


def echoed(needles: set[str], texts: list[str]) -> list[str]:
    """The needles found in any of ``texts`` (NHS-shaped ones also with separators dropped)."""
    flat = [re.sub(r"[ -]", "", t) for t in texts]
    hits = []
    for needle in sorted(needles):
        digits = re.sub(r"[ -]", "", needle)
        if any(needle in t for t in texts) or (
            NHS_SHAPED.fullmatch(needle) and any(digits in f for f in flat)
        ):
            hits.append(needle)
    return hits
