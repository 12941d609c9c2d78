"""NHS England's ``mesh-sandbox``, run as a subprocess for tests that speak MESH.

Usage, from any test module or conftest::

    from tests.mesh_sandbox import running_mesh_sandbox

    @pytest.fixture(scope="module")
    async def sandbox() -> AsyncIterator[MeshSandbox]:
        async with running_mesh_sandbox() as box:
            yield box

    MeshClient(**sandbox.client_kwargs("X26ABC1"))

The sandbox is the FastAPI app ``mesh_sandbox.api:app`` under uvicorn, on
127.0.0.1 with a free port and plain HTTP (it does not insist on TLS). It is
configured only through its environment:

- ``STORE_MODE=memory``: mailboxes X26ABC1, X26ABC2, X26ABC3 (password
  ``password``) from its canned data, empty inboxes, nothing on disk. With
  ``mailboxes=[...]`` it runs ``STORE_MODE=file`` over a temporary
  ``MAILBOXES_DATA_DIR`` holding one empty folder per extra mailbox, which is
  how the sandbox learns of mailboxes beyond its canned ones (also password
  ``password``).
- ``AUTH_MODE=full`` (the default here) checks the ``NHSMESH`` HMAC against
  ``SHARED_KEY`` and the mailbox password; ``none`` checks nothing; ``canned``
  accepts any token whose nonce is ``valid``. Beware: the sandbox's own
  default, ``no_auth``, is not ``none`` and checks the HMAC in full.

The child's warnings are silenced (``PYTHONWARNINGS=ignore``): FastAPI and
pydantic deprecations in the sandbox are not ours, and this test process
imports nothing from the sandbox, so ``filterwarnings = error`` is unaffected.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.ports import free_port

CANNED_MAILBOXES = ("X26ABC1", "X26ABC2", "X26ABC3")
SANDBOX_PASSWORD = "password"  # the sandbox gives every mailbox this password
DEFAULT_SHARED_KEY = "cpis-test-shared-key"


@dataclass(frozen=True)
class MeshSandbox:
    """A running sandbox: where it listens and how to log in to its mailboxes."""

    base_url: str
    shared_key: str
    auth_mode: str
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def mailboxes(self) -> tuple[str, ...]:
        return tuple(self.passwords)

    def client_kwargs(self, mailbox_id: str) -> dict[str, Any]:
        """Keyword arguments for ``cpis.adapters.mesh.MeshClient`` as that mailbox."""
        return {
            "base_url": self.base_url,
            "mailbox_id": mailbox_id,
            "password": self.passwords[mailbox_id],
            "shared_key": self.shared_key,
        }

    async def reset(self) -> None:
        """Empty every inbox and outbox (a sandbox-only admin endpoint)."""
        async with (
            aiohttp.ClientSession() as session,
            session.delete(f"{self.base_url}/messageexchange/admin/reset") as resp,
        ):
            resp.raise_for_status()


class SandboxDidNotStart(RuntimeError):
    pass


@asynccontextmanager
async def running_mesh_sandbox(
    *,
    auth_mode: str = "full",
    shared_key: str = DEFAULT_SHARED_KEY,
    mailboxes: Sequence[str] = (),
    startup_timeout: float = 30.0,
) -> AsyncIterator[MeshSandbox]:
    """Start the sandbox, wait until it answers, yield it, and stop it."""
    workdir = Path(tempfile.mkdtemp(prefix="cpis-mesh-sandbox-"))
    env = {
        **os.environ,
        "ENV": "local",
        "AUTH_MODE": auth_mode,
        "SHARED_KEY": shared_key,
        "STORE_MODE": "memory",
        "PYTHONWARNINGS": "ignore",
    }
    if mailboxes:
        store = workdir / "mailboxes"
        for mailbox in mailboxes:
            # The sandbox refuses lower-case folder names: ids are upper case in MESH.
            (store / mailbox.upper()).mkdir(parents=True)
        env |= {"STORE_MODE": "file", "MAILBOXES_DATA_DIR": str(store)}
    passwords = {m: SANDBOX_PASSWORD for m in (*CANNED_MAILBOXES, *(m.upper() for m in mailboxes))}
    proc: asyncio.subprocess.Process | None = None
    try:
        # Between free_port() and uvicorn's bind another process may take the
        # port; uvicorn then exits at once and we try another.
        for _attempt in range(3):
            port = free_port()
            base_url = f"http://127.0.0.1:{port}"
            log_path = workdir / f"sandbox-{port}.log"
            with log_path.open("wb") as log_file:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "mesh_sandbox.api:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    cwd=workdir,
                )
            if await _wait_until_up(proc, base_url, time.monotonic() + startup_timeout):
                break
            await _stop(proc)
            proc = None
        else:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise SandboxDidNotStart(f"mesh-sandbox did not start; its log ends:\n{tail}")
        yield MeshSandbox(
            base_url=base_url, shared_key=shared_key, auth_mode=auth_mode, passwords=passwords
        )
    finally:
        if proc is not None:
            await _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


async def _wait_until_up(proc: asyncio.subprocess.Process, base_url: str, deadline: float) -> bool:
    """Poll the sandbox's ping endpoint until it answers 200, the process dies, or time's up."""
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                return False
            try:
                async with session.get(f"{base_url}/_ping") as resp:
                    if resp.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    return False


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=5)
        except TimeoutError:
            proc.kill()
            await proc.wait()
