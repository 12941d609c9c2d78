"""Issue 9, item 14, as an operator meets it: `cpis la add`/`la update` check the numbers
ED clinicians ring and the ODS code's shape, and `cpis client deactivate` stops new
tokens at once. The commands run as real processes against the database and data
directory the served app (the ``e2e`` fixture) uses."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.e2e.conftest import E2E, ED_CLIENT, LA_NORTH, LA_NORTH_CLIENT, user_headers
from tests.e2e.demo_process import cpis


@pytest.fixture
def env(e2e: E2E) -> dict[str, str]:
    """What an operator's shell beside this service has: its database and data directory."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CPIS_")}
    return base | {
        "CPIS_DATABASE_URL": e2e.settings.database_url.reveal(),  # type: ignore[union-attr]
        "CPIS_DATA_DIR": str(e2e.settings.data_dir),
        "CPIS_LOG_FORMAT": "json",
    }


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--ods", "bad"], "not a local authority ODS code"),
        (["--office-phone", "1"], "not a phone number"),
        (["--edt-phone", "2"], "not a phone number"),
        (["--edt-phone", "0909 879 0000"], "not a number for people to ring"),
    ],
)
async def test_la_add_refuses_what_a_clinician_could_not_use(
    e2e: E2E, env: dict[str, str], args: list[str], said: str
) -> None:
    """The probe's ``--ods bad --office-phone 1 --edt-phone 2``, one mistake at a time:
    refused, saying which argument and why, and nothing is stored."""
    good = {"--ods": "XLA09", "--office-phone": "01632 960009", "--edt-phone": "01632 960109"}
    good.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [x for kv in good.items() for x in kv]
    code, _out, err = await cpis(env, "la", "add", "--name", "Ninthshire", *flat)
    assert code == 2
    assert said in err and "Traceback" not in err
    assert (await e2e.counts("local_authority"))["local_authority"] == 2  # the world's two


async def test_la_add_stores_numbers_in_one_national_format(e2e: E2E, env: dict[str, str]) -> None:
    """Typed with +44 and no spaces, the numbers are stored and shown as 01632 960009; a
    drama number is accepted with a note that it rings nobody."""
    code, out, err = await cpis(
        env, "la", "add", "--ods", "xla09", "--name", "Ninthshire",
        "--office-phone", "+441632960009", "--edt-phone", "01632960109",
    )  # fmt: skip
    assert code == 0, err
    assert "office hours 01632 960009, emergency duty team 01632 960109" in out
    assert "Ofcom" in err
    rows = await e2e.fetch(
        "SELECT office_phone, edt_phone FROM local_authority WHERE ods_code = 'XLA09'"
    )
    assert [tuple(r) for r in rows] == [("01632 960009", "01632 960109")]


async def test_la_add_does_not_overwrite_a_registered_la(e2e: E2E, env: dict[str, str]) -> None:
    """`la add` with an existing code (a slip of the finger) would replace the numbers
    clinicians ring: it is refused and points at `la update`."""
    code, _out, err = await cpis(
        env, "la", "add", "--ods", LA_NORTH.ods_code, "--name", "Wrongshire",
        "--office-phone", "01632 960555", "--edt-phone", "01632 960556",
    )  # fmt: skip
    assert code == 2 and "cpis la update" in err
    rows = await e2e.fetch("SELECT name FROM local_authority WHERE ods_code = 'XLA01'")
    assert rows[0]["name"] == LA_NORTH.name


async def _organization(e2e: E2E) -> dict[str, Any]:
    headers = {**await e2e.auth(ED_CLIENT), **user_headers()}
    reply = await e2e.request("GET", f"/FHIR/R4/Organization/{LA_NORTH.ods_code}", headers=headers)
    return reply.fhir()


async def test_la_update_changes_only_what_is_given(e2e: E2E, env: dict[str, str]) -> None:
    """The EDT number changes, the rest stays, and the LA's Organization version goes up
    (so an ED system holding the old one can tell)."""
    before = await _organization(e2e)
    code, out, err = await cpis(
        env, "la", "update", "--ods", LA_NORTH.ods_code, "--edt-phone", "020 7946 0123"
    )
    assert code == 0, err
    assert "emergency duty team 020 7946 0123" in out
    after = await _organization(e2e)
    assert int(after["meta"]["versionId"]) == int(before["meta"]["versionId"]) + 1
    assert after["name"] == before["name"]
    phones = {t["value"] for t in after["telecom"]}
    assert phones == {LA_NORTH.office_phone, "020 7946 0123"}


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--ods", "XLA01", "--office-phone", "1"], "not a phone number"),
        (["--ods", "XLA01", "--name", "   "], "name: none given"),
        (["--ods", "XLA01"], "nothing to change"),
        (["--ods", "XLA99", "--name", "Nowhere"], "not registered"),
    ],
)
async def test_la_update_refusals(
    e2e: E2E, env: dict[str, str], args: list[str], said: str
) -> None:
    """A bad value, nothing to change, or an unknown LA: refused, and nothing moves."""
    code, _out, err = await cpis(env, "la", "update", *args)
    assert code == 2 and said in err, err
    rows = await e2e.fetch(
        "SELECT version, office_phone FROM local_authority WHERE ods_code = 'XLA01'"
    )
    assert tuple(rows[0]) == (1, LA_NORTH.office_phone)


async def test_client_deactivate_stops_new_tokens_at_once(e2e: E2E, env: dict[str, str]) -> None:
    """After `cpis client deactivate`, the token endpoint refuses the client; a token it
    already had lives out its short lifetime, as the README says."""
    issued = await e2e.auth(LA_NORTH_CLIENT)
    code, out, err = await cpis(env, "client", "deactivate", "--id", LA_NORTH_CLIENT)
    assert code == 0, err
    assert "no new token" in out
    refused = await e2e.token_request(e2e.assertion(LA_NORTH_CLIENT))
    assert refused.status == 401 and "not active" in refused.text
    still = await e2e.request("GET", "/la/v1/plans/NO-SUCH-PLAN", headers=issued)
    assert still.status == 404
    code, _out, err = await cpis(env, "client", "deactivate", "--id", "no-such-client")
    assert code == 2 and "no client no-such-client" in err


async def test_client_add_checks_ods_shapes_by_role(e2e: E2E, env: dict[str, str]) -> None:
    """An LA client needs an LA-shaped code; a health client a health-shaped one."""
    key = str(e2e.settings.data_dir / "x.pem")
    code, _out, err = await cpis(
        env, "client", "add", "--id", "x", "--role", "la", "--ods", "RRK", "--new-key", key
    )
    assert code == 2 and "not a local authority ODS code" in err
    code, _out, err = await cpis(
        env, "client", "add", "--id", "x", "--role", "health", "--ods", "XLA0001", "--new-key", key
    )
    assert code == 2 and "ODS code" in err


async def test_client_add_never_silently_replaces_or_reactivates(
    e2e: E2E, env: dict[str, str]
) -> None:
    """`client add` for an id already registered is refused (its keys would be swapped
    silently); with --replace the keys change but a deactivated client stays deactivated."""
    key = str(e2e.settings.data_dir / "again.pem")
    code, _out, err = await cpis(
        env, "client", "add", "--id", LA_NORTH_CLIENT, "--role", "la", "--ods", "XLA01",
        "--new-key", key,
    )  # fmt: skip
    assert code == 2 and "registered already" in err
    assert (await e2e.token_request(e2e.assertion(LA_NORTH_CLIENT))).status == 200

    code, _out, err = await cpis(env, "client", "deactivate", "--id", LA_NORTH_CLIENT)
    assert code == 0, err
    code, _out, err = await cpis(
        env, "client", "add", "--id", LA_NORTH_CLIENT, "--role", "la", "--ods", "XLA01",
        "--new-key", key, "--replace",
    )  # fmt: skip
    assert code == 0, err
    (row,) = await e2e.fetch("SELECT active FROM client WHERE id = $1", LA_NORTH_CLIENT)
    assert row["active"] is False
