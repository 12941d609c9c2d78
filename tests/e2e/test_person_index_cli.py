"""Issue 4 as a new user meets it: the demo with the local person index.

`make run` serves the demo with ``CPIS_PERSON_INDEX=local``, and the demo loads
``schemas/examples/person-index-example.csv``. The example uploads then go in
by the command line and over HTTP, their acknowledgements say what happened to
each record, the applied plans show in a FHIR lookup and the rejected ones do
not; ``cpis trace`` proposes numbers; and a later index load that retires a
child's number tells the LA. (The third way in, MESH, is
tests/e2e/test_mesh_uploads.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.demo_process import CPIS, EXAMPLES, cpis, running_demo
from tests.polling import wait_until

Demo = tuple[dict[str, str], str, str]
REPO = EXAMPLES.parents[1]
ED_HEADERS = {
    "NHSD-End-User-Organisation-ODS": "XED01",
    "NHSD-End-User-Id": "555021935107",
    "NHSD-End-User-Name": "Demo Nurse",
    "NHSD-End-User-Role": "Staff Nurse",
}


@pytest.fixture
async def demo() -> AsyncIterator[Demo]:
    async with running_demo({"CPIS_PERSON_INDEX": "local"}) as running:
        yield running


async def _token(env: Mapping[str, str], base: str, client: str) -> str:
    key = Path(env["CPIS_DATA_DIR"]) / "demo" / f"{client}.pem"
    code, out, err = await cpis(
        env, "token", "--client", client, "--key", str(key), "--url", f"{base}/oauth2/token"
    )
    assert code == 0, err
    return out.strip()


async def _plans_shown(http: aiohttp.ClientSession, base: str, token: str, nhs: str) -> int:
    headers = ED_HEADERS | {"Authorization": f"Bearer {token}", "TraceID": f"e2e-{nhs}"}
    url = f"{base}/FHIR/R4/CareTeam?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"
    async with http.get(url, headers=headers) as resp:
        assert resp.status == 200
        bundle: dict[str, Any] = await resp.json(content_type=None)
    return int(bundle["total"])


async def test_example_uploads_by_cli_and_http_then_a_fhir_lookup(demo: Demo) -> None:
    env, printed, base = demo
    assert "Person index: local" in printed

    # 1. The command line, pasted from the demo's instructions into a shell that
    #    has none of the server's CPIS_* settings.
    ack_path = Path(env["CPIS_DATA_DIR"]) / "ack.json"
    (command,) = [line.strip() for line in printed.splitlines() if " upload schemas/" in line]
    assert "CPIS_PERSON_INDEX=local" in command
    bare = {k: v for k, v in env.items() if not k.startswith("CPIS_")}
    proc = await asyncio.create_subprocess_shell(
        f"{command} --ack {ack_path}",
        cwd=REPO,
        env=bare,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    raw_out, raw_err = await asyncio.wait_for(proc.communicate(), timeout=120)
    out, err = raw_out.decode(), raw_err.decode()
    assert proc.returncode == 0, err
    ack = json.loads(ack_path.read_text())
    assert ack["file_code"] == "CPF03"
    assert [r["code"] for r in ack["records"]] == ["CPR06", "CPR06", "CPR06", "CPR07"]
    assert "record 4 (DEMO-CPP-0099): CPR07 no such plan to delete" in out

    # 2. HTTP, with the file that meets every record code.
    la_token = await _token(env, base, "demo-la")
    body = (EXAMPLES / "upload-example-index.json").read_bytes()
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/la/v1/uploads",
            data=body,
            headers={"Authorization": f"Bearer {la_token}", "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 200
            ack = await resp.json()
        codes = {r["plan_id"]: r["code"] for r in ack["records"]}
        assert ack["file_code"] == "CPF03"
        assert codes == {
            "DEMO-CPP-0001": "CPR06",
            "DEMO-LAC-0002": "CPR06",
            "DEMO-UCPP-0003": "CPR06",
            "IDX-CPP-0101": "CPR01",
            "IDX-CPP-0102": "CPR01",
            "IDX-CPP-0103": "CPR02",
            "IDX-CPP-0104": "CPR03",
            "IDX-LAC-0105": "CPR05",
            "IDX-CPP-0106": "CPR04",
            "IDX-CPP-0107": "CPR06",
            "IDX-CPP-0108": "CPR06",
            "IDX-CPP-0109": "CPR06",
            "IDX-CPP-0110": "CPR07",
        }
        superseded = next(r for r in ack["records"] if r["code"] == "CPR05")
        assert superseded["new_nhs_number"] == "9990000131"
        for record in ack["records"]:
            assert (record["code"] == "CPR06") == ("reason" not in record)

        # 3. What was applied shows in a FHIR lookup; what was not, does not.
        ed_token = await _token(env, base, "demo-ed")
        assert await _plans_shown(http, base, ed_token, "9990000166") == 1  # names swapped
        assert await _plans_shown(http, base, ed_token, "9990000174") == 1  # date transposed
        assert await _plans_shown(http, base, ed_token, "9990000115") == 0  # CPR03
        assert await _plans_shown(http, base, ed_token, "9990000123") == 0  # CPR05


async def test_trace_proposes_numbers_and_an_index_load_tells_the_la(demo: Demo) -> None:
    env, _printed, base = demo
    review = Path(env["CPIS_DATA_DIR"]) / "review.csv"
    code, out, err = await cpis(
        env, "trace", str(EXAMPLES / "trace-example.csv"), "--review", str(review)
    )
    assert code == 0, err
    assert "go-live target 95%: not met" in out
    text = review.read_text()
    rows = {r["plan_id"]: r for r in csv.DictReader(text.splitlines())}
    assert rows["TRACE-0001"]["status"] == "certain"
    assert rows["TRACE-0001"]["proposed_nhs_number"] == "9990000026"
    assert rows["TRACE-0002"]["status"] == "possible"  # twins: a person must choose
    assert rows["TRACE-0006"]["status"] == "none"
    assert rows["TRACE-0007"]["status"] == "verified"
    assert rows["TRACE-0008"]["proposed_nhs_number"] == "9990000131"  # superseded
    for name in ("Examplefamily", "Testchild", "2016-07-14"):
        assert name not in text

    # A later extract merges the demo CPP child (who has a plan) into a new number.
    extract = Path(env["CPIS_DATA_DIR"]) / "extract.csv"
    extract.write_text(
        "nhs_number,family_name,given_names,birth_date,sex,postcode,sensitive,superseded_by\n"
        "9990000018,Testchild,Alexander James,2016-07-14,male,LS1 4AP,N,9990000239\n"
        "9990000239,Testchild,Alexander James,2016-07-14,male,LS1 4AP,N,\n"
    )
    code, out, err = await cpis(env, "person-index", "load", str(extract))
    assert code == 0, err
    assert "1 numbers newly out of use; 1 nhs-number-inactive notifications queued" in out

    la_token = await _token(env, base, "demo-la")
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{base}/la/v1/notifications", headers={"Authorization": f"Bearer {la_token}"}
        ) as resp,
    ):
        assert resp.status == 200
        inbox = await resp.json()
    (change,) = inbox["nhs_number_changes"]
    assert change["nhs_number"] == "9990000018"
    assert change["status"] == "superseded"
    assert change["new_nhs_number"] == "9990000239"
    assert change["plan_ids"] == ["DEMO-CPP-0001"]

    # A bad extract changes nothing and says where, never what.
    extract.write_text(
        "nhs_number,family_name,given_names,birth_date,sex,postcode,sensitive,superseded_by\n"
        "9990000018,Testchild,Alexander James,2016-07-14,male,LS1 4AP,N,\n"
        "9990000019,Secretname,Alexander,2016-13-14,male,LS1 4AP,N,\n"
    )
    code, out, err = await cpis(env, "person-index", "load", str(extract))
    assert code == 1
    assert "line 3" in err and "nothing changed" in err
    assert "Secretname" not in err and "9990000019" not in err


async def test_serve_warns_when_the_local_index_is_empty(tmp_path: Path) -> None:
    """Every upload would get CPR01 until an extract is loaded: the operator is told."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPIS_")}
    env |= {
        "CPIS_DATA_DIR": str(tmp_path),
        "CPIS_PORT": "0",
        "CPIS_LOG_FORMAT": "json",
        "CPIS_PERSON_INDEX": "local",
    }
    out_path = tmp_path / "serve.out"
    with out_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *CPIS, "serve", env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
        try:

            async def warned() -> bool:
                assert proc.returncode is None, out_path.read_text(errors="replace")
                return "person_index_empty" in out_path.read_text(errors="replace")

            await wait_until(warned, limit=90, what="the empty-index warning")
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # it may end meanwhile
                    proc.terminate()
            await asyncio.wait_for(proc.wait(), timeout=30)
    # Stopped as soon as it warned, while still starting (the warning comes before it
    # serves): it finishes starting, then stops in order, its embedded PostgreSQL too
    # (once, SIGTERM at this point left that PostgreSQL running).
    assert proc.returncode == 0, out_path.read_text(errors="replace")
    assert not (tmp_path / "pg" / "postmaster.pid").exists(), "embedded PostgreSQL left running"
