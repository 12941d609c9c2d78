"""``scripts/mesh-demo`` as a new user runs it (``make mesh-demo``): the MESH way in.

The script is run for real, as a subprocess: it starts mesh-sandbox and
``cpis serve --demo`` itself, sends the example CSV by MESH, prints the
acknowledgement, looks the child up as the demo ED, and cleans up after itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from tests.polling import wait_until

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "mesh-demo"
EXAMPLES = REPO / "schemas" / "examples"
RUN_SECONDS = 240  # a cold start of the embedded PostgreSQL on a busy machine included


def _env() -> dict[str, str]:
    # The caller's CPIS_* would be dropped by the script anyway; drop them here too so
    # the test shows it needs none.
    return {k: v for k, v in os.environ.items() if not k.startswith("CPIS_")}


async def _run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        *args,
        cwd=REPO,
        env=_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=RUN_SECONDS)
    except TimeoutError:
        await _stop(proc)
        raise
    return proc.returncode or 0, out.decode(), err.decode()


def _acknowledgements(printed: str) -> list[dict[str, Any]]:
    """The pretty-printed acknowledgements: JSON blocks from a '{' line to a '}' line."""
    return [json.loads(block) for block in re.findall(r"^\{\n.*?^\}$", printed, re.M | re.S)]


def _temp_dirs(printed: str) -> list[Path]:
    return [Path(p) for p in set(re.findall(r"(/\S*cpis-mesh-demo-[^/\s]+)", printed))]


async def test_the_example_csv_goes_by_mesh_and_the_ed_finds_the_plan() -> None:
    """Exit code 0; the acknowledgement says CPF03 (the file's last record deletes a plan
    the LA never sent) with a code per record; the ED's lookup finds the child's one
    plan; and nothing the script started is left behind."""
    code, out, err = await _run()
    assert code == 0, out + err
    [ack] = _acknowledgements(out)
    assert ack["la_ods"] == "XDM01" and ack["sequence"] == 42
    assert ack["file_code"] == "CPF03"
    assert [r["code"] for r in ack["records"]] == ["CPR06", "CPR06", "CPR06", "CPR07"]
    assert "the lookup found 2 plans\n" in out  # the demo's own, and the file's
    assert "DEMO-CPP-0001" in out
    workdirs = _temp_dirs(out)
    assert workdirs, out
    assert not any(d.exists() for d in workdirs)


async def test_keep_leaves_the_demo_up_for_more_files_until_interrupted(tmp_path: Path) -> None:
    """With --keep the printed `--sandbox URL FILE` command sends another file: the JSON
    example carries the same sequence, so the stored acknowledgement comes back. Ctrl-C
    then stops the demo with exit code 0 and removes its data."""
    out_path = tmp_path / "mesh-demo.out"
    with out_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "--keep",
            cwd=REPO,
            env=_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:

        async def kept_running() -> bool:
            assert proc.returncode is None, out_path.read_text()
            return "Ctrl-C stops them" in out_path.read_text()

        await wait_until(kept_running, limit=RUN_SECONDS, what="the --keep demo to be up")
        printed = out_path.read_text()
        [first] = _acknowledgements(printed)
        send = re.search(r"--sandbox (http://127\.0\.0\.1:\d+) FILE", printed)
        assert send is not None, printed
        code, again, err = await _run(
            "--sandbox", send.group(1), str(EXAMPLES / "upload-example.json")
        )
        assert code == 0, again + err
        [second] = _acknowledgements(again)
        assert second == first
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), timeout=60) == 0
    finally:
        await _stop(proc)
    printed = out_path.read_text()
    assert "stopping mesh-sandbox" in printed
    workdirs = _temp_dirs(printed)
    assert workdirs, printed
    assert not any(d.exists() for d in workdirs)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM first: the script then stops the servers it started."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
