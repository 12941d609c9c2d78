"""Stopped while still starting: `cpis serve` and `cpis worker` told to stop (SIGTERM, as
systemd, Kubernetes or Ctrl-C's neighbour would) once their embedded PostgreSQL is up
but before they serve. They finish starting, then stop in order: exit 0, the embedded
PostgreSQL stopped with them. (Python's default death on SIGTERM left that PostgreSQL
running, holding the data directory, until the signal was heard from the start.)"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from tests.e2e.demo_process import CPIS
from tests.polling import wait_until


@pytest.mark.parametrize("command", ["serve", "worker"])
async def test_stopped_while_starting_stops_its_embedded_postgresql(
    tmp_path: Path, command: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPIS_")}
    env |= {"CPIS_DATA_DIR": str(tmp_path), "CPIS_PORT": "0", "CPIS_LOG_FORMAT": "json"}
    if command == "worker":  # a worker sets up no database: serve (started, stopped) does
        setup = await asyncio.create_subprocess_exec(
            *CPIS, "migrate", env=env, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert await asyncio.wait_for(setup.wait(), timeout=120) == 0
    out_path = tmp_path / f"{command}.out"
    with out_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *CPIS, command, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
        try:

            async def postgres_up() -> bool:
                assert proc.returncode is None, out_path.read_text(errors="replace")
                return "embedded_postgres_started" in out_path.read_text(errors="replace")

            await wait_until(postgres_up, limit=90, what="the embedded PostgreSQL to start")
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout=60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    printed = out_path.read_text(errors="replace")
    assert proc.returncode == 0, printed
    assert "Traceback" not in printed, printed
    assert not (tmp_path / "pg" / "postmaster.pid").exists(), "embedded PostgreSQL left running"
