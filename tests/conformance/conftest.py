"""The conformance suite runs the service as the e2e tests do, under a base URL with NHS
England's ``/cpis`` path, with a local CIS2-like OpenID provider trusted."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cis2_issuer import LocalCis2
from tests.e2e.conftest import cis2, client_keys, e2e  # noqa: F401 (fixtures the tests use)


@pytest.fixture
def e2e_overrides(cis2: LocalCis2) -> dict[str, Any]:  # noqa: F811 (the fixture above)
    return {"cis2_issuers": (cis2.issuer,)}


@pytest.fixture
def e2e_base_path() -> str:
    """NHS England serves the API at https://{host}/cpis/FHIR/R4."""
    return "/cpis"
