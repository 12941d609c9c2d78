"""``cpis la sign-in`` and ``cpis org sign-in`` as an operator runs them (issue 12): the
organisation's provider is registered (a client secret read from a file and sealed,
never stored as given), and set-ups that could not work are refused, changing nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import E2E, ED, LA_NORTH
from tests.e2e.demo_process import cpis


@pytest.fixture
def env(e2e: E2E) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CPIS_")}
    return base | {
        "CPIS_DATABASE_URL": e2e.settings.database_url.reveal(),  # type: ignore[union-attr]
        "CPIS_DATA_DIR": str(e2e.settings.data_dir),
        "CPIS_LOG_FORMAT": "json",
    }


ENTRA = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/v2.0"
CIS2 = (
    "https://am.nhsint.auth-ptl.cis2.spineservices.nhs.uk/openam/oauth2/realms/root/realms/"
    "NHSIdentity/realms/Healthcare"
)


async def test_an_las_entra_tenant_is_registered_with_its_secret_sealed(
    e2e: E2E, env: dict[str, str], tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("very-secret-value\n")
    code, out, err = await cpis(
        env, "la", "sign-in", LA_NORTH.ods_code, "--issuer", ENTRA, "--client-id", "cpis-app",
        "--client-secret-file", str(secret), "--manager", "Team.Manager",
    )  # fmt: skip
    assert code == 0, err
    assert "a client secret" in out and "Team.Manager -> manager" in out
    assert "very-secret-value" not in out + err
    rows = await e2e.fetch("SELECT issuer, client_secret FROM web_sign_in_config")
    assert rows[0]["issuer"] == ENTRA
    assert b"very-secret-value" not in bytes(rows[0]["client_secret"])
    config = await e2e.runtime.web_sessions.sign_in_config(LA_NORTH.ods_code)
    assert config is not None and config.client_secret == "very-secret-value"


async def test_a_health_organisation_signs_in_with_cis2(e2e: E2E, env: dict[str, str]) -> None:
    code, out, err = await cpis(
        env, "org", "sign-in", ED.ods_code, "--issuer", CIS2, "--client-id", "x.apps.national",
        "--role-code", "R8001", "--private-key-jwt",
    )  # fmt: skip
    assert code == 0, err
    assert "/.well-known/jwks.json" in out and "R8001 -> clinician" in out
    config = await e2e.runtime.web_sessions.sign_in_config(ED.ods_code)
    assert config is not None and config.token_auth == "private_key_jwt"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["la", "sign-in", "XLA09", "--issuer", ENTRA, "--client-id", "c"], "not registered"),
        (["la", "sign-in", "XLA01", "--issuer", "http://idp.example", "--client-id", "c"], "https"),
        (["la", "sign-in", "XLA01", "--issuer", ENTRA + "/", "--client-id", "c"], "trailing /"),
        (["org", "sign-in", "XMIU9", "--issuer", CIS2, "--client-id", "c"], "--name"),
    ],
)
async def test_set_ups_that_could_not_work_are_refused(
    e2e: E2E, env: dict[str, str], args: list[str], said: str
) -> None:
    code, _out, err = await cpis(env, *args)
    assert code == 2, err
    assert said in err and "Traceback" not in err
    assert (await e2e.counts("web_sign_in_config"))["web_sign_in_config"] == 0
