"""``cpis`` as a new user runs it: real processes on their own data directory."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from tests.polling import wait_until
from tests.ports import served_port

CPIS = [sys.executable, "-m", "cpis"]
EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"


async def cpis(env: Mapping[str, str], *args: str) -> tuple[int, str, str]:
    """Run one ``cpis`` command; its exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        *CPIS, *args, env=dict(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


@asynccontextmanager
async def running_demo(
    extra_env: Mapping[str, str] | None = None, *, base_path: str = ""
) -> AsyncIterator[tuple[dict[str, str], str, str]]:
    """A `cpis serve --demo` process: its environment, what it printed, and the server's
    root URL. ``base_path`` (``/cpis``) puts a path on its public base URL."""
    data = Path(tempfile.mkdtemp(prefix="cpis-demo-"))
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CPIS_") and k != "XDG_RUNTIME_DIR"
    }
    # Any free port: serve binds port 0 and says which it got (tests/ports.py).
    env |= {"CPIS_DATA_DIR": str(data), "CPIS_PORT": "0", "CPIS_LOG_FORMAT": "json"}
    if base_path:
        env["CPIS_PUBLIC_BASE_URL"] = f"http://127.0.0.1:0{base_path}"
    env |= dict(extra_env or {})
    out_path = data / "serve.out"
    with out_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *CPIS, "serve", "--demo", env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )

        async def started() -> bool:
            printed = out_path.read_text(errors="replace")
            assert proc.returncode is None, printed
            return "CP-IS demo is running" in printed

        try:
            await wait_until(started, limit=90, what="the demo to start")
            printed = out_path.read_text()
            port = served_port(printed)
            assert port, printed
            # Later commands (`cpis token`, …) reach this server at its public base URL.
            env |= {
                "CPIS_PORT": str(port),
                "CPIS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}{base_path}",
            }
            yield env, printed, f"http://127.0.0.1:{port}"
        finally:
            if proc.returncode is None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), timeout=30)
    assert proc.returncode == 0, out_path.read_text(errors="replace")
