"""The quick start as a new user runs it: ``cpis serve --demo`` as a real process.

Follows the printed instructions: ``cpis token`` for the demo ED, a CareTeam
lookup for a demo child, then that visit in the AuditEvent search. Also runs
the admin commands against the same data directory while the server is up.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from cpis.settings import Settings
from tests.e2e.demo_process import cpis as _cpis
from tests.e2e.demo_process import running_demo
from tests.fhir_validation import validate_resource


@pytest.fixture
async def demo_server() -> AsyncIterator[tuple[dict[str, str], str, str]]:
    """A `cpis serve --demo` process on its own data directory and port."""
    async with running_demo() as demo:
        yield demo


async def test_quick_start_instructions_work(
    demo_server: tuple[dict[str, str], str, str],
) -> None:
    """The printed token command and curl lookups return a CareTeam, then show the visit."""
    await follow_quick_start(*demo_server)


async def test_quick_start_instructions_work_under_a_base_path() -> None:
    """With CPIS_PUBLIC_BASE_URL carrying a path (as NHS England's ``…/cpis``), every URL
    the demo prints is under it, and the printed token command and lookups work as
    printed. (The demo OpenID provider's own address is not the service's.)"""
    async with running_demo(base_path="/cpis") as (env, printed, root):
        urls = re.findall(r"https?://[^\s\"']+", printed)
        urls = [url for url in urls if not url.startswith(Settings.from_env({}).demo_oidc_issuer)]
        assert urls, printed
        assert all(url.startswith(f"{root}/cpis") for url in urls), urls
        await follow_quick_start(env, printed, root)


async def follow_quick_start(env: dict[str, str], printed: str, root: str) -> None:
    """Run the printed `cpis token`, then the printed CareTeam and AuditEvent lookups; the
    probes answer at the server's root. Then the user-restricted way, as printed."""
    await follow_user_restricted_lines(env, printed)
    token_cmd = re.search(
        r"APP_TOKEN=\$\((.*?) token --client (\S+) --key (\S+) --url (\S+)\)", printed
    )
    assert token_cmd is not None, printed
    # the printed command works even without the server's CPIS_* settings
    bare = {k: v for k, v in env.items() if not k.startswith("CPIS_")}
    code, token, err = await _cpis(
        bare, "token", "--client", token_cmd.group(2), "--key",
        str(Path(env["CPIS_DATA_DIR"]) / "demo" / "demo-ed.pem"), "--url", token_cmd.group(4),
    )  # fmt: skip
    assert code == 0, err
    app_line = next(line for line in printed.splitlines() if "$APP_TOKEN" in line)
    lookup_url = re.search(r'"(http://[^"]+/CareTeam\?[^"]+)"', app_line)
    history_url = re.search(r'"(http://[^"]+/AuditEvent\?[^"]+)"', printed)
    assert lookup_url and history_url
    headers = dict(re.findall(r'-H "([^:]+): ([^"]+)"', app_line))
    headers["Authorization"] = f"Bearer {token.strip()}"
    headers["TraceID"] = "demo-test-1"
    async with aiohttp.ClientSession() as http:
        async with http.get(lookup_url.group(1), headers=headers) as resp:
            assert resp.status == 200
            bundle = await resp.json(content_type=None)
        validate_resource(bundle)
        assert bundle["total"] == 1
        care_team = bundle["entry"][0]["resource"]
        assert care_team["resourceType"] == "CareTeam"
        assert {t["value"] for t in care_team["telecom"]} == {"01632 960000", "01632 960999"}
        async with http.get(history_url.group(1), headers=headers) as resp:
            assert resp.status == 200
            history = await resp.json(content_type=None)
        validate_resource(history)
        # the user-restricted visit before, and this one
        assert history["total"] == 2
        event = history["entry"][0]["resource"]
        assert event["resourceType"] == "AuditEvent"
        assert any(a.get("name") == "Demo Nurse" for a in event["agent"])
        async with http.get(f"{root}/readyz") as resp:
            assert resp.status == 200
        async with http.get(f"{root}/metrics") as resp:
            assert "cpis_lookups_total" in await resp.text()


async def follow_user_restricted_lines(env: dict[str, str], printed: str) -> None:
    """The demo's user-restricted lines as printed: `cpis demo-id-token` (the demo's stand-in
    for CIS2), `cpis token --id-token` (token exchange), then a CareTeam lookup and the
    AuditEvent search with the guide's _include, sending only the guide's three headers:
    the visit names the demo nurse through her PractitionerRole."""
    lines = printed.splitlines()
    id_line = next(line for line in lines if "ID_TOKEN=$(" in line)
    id_cmd = re.search(r"ID_TOKEN=\$\((.*) demo-id-token --issuer (\S+)\)", id_line)
    assert id_cmd is not None, id_line
    bare = {k: v for k, v in env.items() if not k.startswith("CPIS_")}
    # The printed command carries the data directory it needs (and nothing else).
    for assignment in re.findall(r"(CPIS_[A-Z_]+)=(\S+)", id_cmd.group(1)):
        bare[assignment[0]] = assignment[1]
    code, id_token, err = await _cpis(bare, "demo-id-token", "--issuer", id_cmd.group(2))
    assert code == 0, err
    exchange = re.search(
        r"TOKEN=\$\((.*?) token --client (\S+) --key (\S+) --url (\S+) --id-token", printed
    )
    assert exchange is not None, printed
    bare = {k: v for k, v in env.items() if not k.startswith("CPIS_")}
    code, token, err = await _cpis(
        bare, "token", "--client", exchange.group(2), "--key", exchange.group(3),
        "--url", exchange.group(4), "--id-token", id_token.strip(),
    )  # fmt: skip
    assert code == 0, err
    user_lines = [line for line in lines if "curl" in line and "$TOKEN" in line]
    assert len(user_lines) == 2, user_lines
    async with aiohttp.ClientSession() as http:
        bodies = []
        for line in user_lines:
            headers = dict(re.findall(r'-H "([^:]+): ([^"]+)"', line))
            assert set(headers) == {"Authorization", "TraceID", "IsUnscheduledAccessEvent"}
            headers["Authorization"] = f"Bearer {token.strip()}"
            headers["TraceID"] = "demo-test-user-restricted"
            url = re.search(r'"(http://[^"]+)"', line)
            assert url is not None, line
            async with http.get(url.group(1), headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                bodies.append(await resp.json(content_type=None))
    lookup, history = bodies
    validate_resource(lookup)
    validate_resource(history)
    care_team = lookup["entry"][0]["resource"]
    edt = [t["value"] for t in care_team["telecom"] if t["use"] == "mobile"]
    assert edt == ["01632 960999"]
    viewers = [e["resource"] for e in history["entry"] if e["search"]["mode"] == "include"]
    assert [v["practitioner"]["display"] for v in viewers] == ["Casey Demonurse"]
    assert viewers[0]["code"][0]["coding"][0]["display"] == "Nurse Access Role"


async def test_admin_commands_share_the_running_database(
    demo_server: tuple[dict[str, str], str, str],
) -> None:
    """`la add`, `client add` and `token` work against the data directory serve is using."""
    env, _printed, _base = demo_server
    code, out, err = await _cpis(
        env, "la", "add", "--ods", "XLA77", "--name", "Gammashire",
        "--office-phone", "01632 960777", "--edt-phone", "01632 960778",
    )  # fmt: skip
    assert code == 0, err
    key = Path(env["CPIS_DATA_DIR"]) / "gamma.pem"
    code, out, err = await _cpis(
        env, "client", "add", "--id", "gamma-cms", "--role", "la", "--ods", "XLA77",
        "--new-key", str(key), "--alg", "EdDSA",
    )  # fmt: skip
    assert code == 0, err
    assert "gamma-cms" in out
    code, token, err = await _cpis(env, "token", "--client", "gamma-cms", "--key", str(key))
    assert code == 0, err
    assert token.count(".") == 2
    code, out, err = await _cpis(env, "audit", "verify")
    assert code == 0, err
    assert "intact" in out


async def test_client_for_an_unregistered_la_is_refused(
    demo_server: tuple[dict[str, str], str, str],
) -> None:
    """An LA client can only be registered for an LA that exists."""
    env, _printed, _base = demo_server
    code, _out, err = await _cpis(
        env, "client", "add", "--id", "x", "--role", "la", "--ods", "XLA98",
        "--new-key", str(Path(env["CPIS_DATA_DIR"]) / "x.pem"),
    )  # fmt: skip
    assert code == 2
    assert "not registered" in err


async def test_cli_upload_applies_the_example_file_to_the_demo_la(
    demo_server: tuple[dict[str, str], str, str],
) -> None:
    """`cpis upload` applies schemas/examples/upload-example.json (written for the demo LA)
    beside a running server, prints a table of codes and writes the acknowledgement;
    sending it again gives the same acknowledgement."""
    env, _printed, _base = demo_server
    example = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "upload-example.json"
    ack_path = Path(env["CPIS_DATA_DIR"]) / "ack.json"
    code, out, err = await _cpis(env, "upload", str(example), "--ack", str(ack_path))
    assert code == 0, err
    assert "CPR06" in out
    first = json.loads(ack_path.read_text())
    assert first["file_code"] in ("CPF02", "CPF03")
    code, out, err = await _cpis(env, "upload", str(example), "--ack", str(ack_path))
    assert code == 0, err
    assert json.loads(ack_path.read_text()) == first


async def test_cli_purge_runs_beside_the_server(
    demo_server: tuple[dict[str, str], str, str],
) -> None:
    """`cpis purge` runs retention against the served database; the demo's plans are
    current, so nothing goes."""
    env, _printed, _base = demo_server
    code, out, err = await _cpis(env, "purge")
    assert code == 0, err
    assert out.strip() == "purged 0 plans, 0 access events, 0 notifications"
