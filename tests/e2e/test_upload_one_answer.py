"""Issue 9, item 13: one file gets one answer whichever way it comes. `cpis serve`
records the person index it checks uploads against; `cpis upload` run beside it with
no CPIS_PERSON_INDEX follows that record (before, it checked check digits only and
applied what HTTP refused with CPR01), and one told of another index refuses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.demo_process import EXAMPLES, cpis, running_demo
from tests.e2e.test_cli_data_dir import one_error_line

Demo = tuple[dict[str, str], str, str]


@pytest.fixture
async def demo() -> AsyncIterator[Demo]:
    async with running_demo({"CPIS_PERSON_INDEX": "local"}) as running:
        yield running


async def test_the_same_file_by_cli_and_by_http_gets_the_same_codes(demo: Demo) -> None:
    """The example that meets every record code, by `cpis upload` from a shell with only
    the data directory set, then (the same records, next sequence number) over HTTP:
    record for record the same codes, CPR01 for the numbers the index lacks."""
    env, _printed, base = demo
    shell = {k: v for k, v in env.items() if k != "CPIS_PERSON_INDEX"}
    data = Path(env["CPIS_DATA_DIR"])
    ack_path = data / "cli-ack.json"
    code, _out, err = await cpis(
        shell, "upload", str(EXAMPLES / "upload-example-index.json"), "--ack", str(ack_path)
    )
    assert code == 0, err
    by_cli = {r["plan_id"]: r["code"] for r in json.loads(ack_path.read_text())["records"]}
    assert "CPR01" in by_cli.values()

    document = json.loads((EXAMPLES / "upload-example-index.json").read_text())
    document["sequence"] += 1
    code, token, err = await cpis(
        shell, "token", "--client", "demo-la", "--key", str(data / "demo" / "demo-la.pem"),
        "--url", f"{base}/oauth2/token",
    )  # fmt: skip
    assert code == 0, err
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/la/v1/uploads",
            json=document,
            headers={"Authorization": f"Bearer {token.strip()}"},
        ) as resp,
    ):
        assert resp.status == 200
        by_http = {r["plan_id"]: r["code"] for r in (await resp.json())["records"]}
    assert by_cli == by_http


async def test_a_command_told_of_another_person_index_refuses(demo: Demo) -> None:
    """CPIS_PERSON_INDEX=none beside a serve that checks the local index: refused in one
    line saying which index serve uses, and nothing is applied."""
    env, _printed, _base = demo
    told = env | {"CPIS_PERSON_INDEX": "none"}
    code, out, err = await cpis(told, "upload", str(EXAMPLES / "upload-example-index.json"))
    assert code != 0
    line = one_error_line(err)
    assert "local person index" in line and "CPIS_PERSON_INDEX=none" in line
    assert "CPR" not in out
