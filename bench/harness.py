"""Running the pieces of a benchmark: child processes, ports, readiness, databases.

Every child starts in its own process group and ``Processes.stop_all`` stops
each by its own id, so a benchmark can always clean up after itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"


class BenchError(Exception):
    """Set-up went wrong: the benchmark could not be run."""


# --- subprocesses ------------------------------------------------------------


@dataclass
class Processes:
    """Every child we start, each in its own process group, stopped by its own id."""

    logs: Path
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.children[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with {proc.returncode}\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 20) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_all(self) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, procs: Processes, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise BenchError(f"{url} not ready after {timeout:.0f}s")


def run_cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "cpis"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"cpis {' '.join(args[:2])} failed:\n{done.stderr.strip()}")
    return done.stdout.strip()


# --- databases ---------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    """The same server URL, pointing at another database."""
    base, sep, query = url.partition("?")
    scheme, _, rest = base.partition("://")
    authority, _slash, _db = rest.partition("/")
    return f"{scheme}://{authority}/{name}{sep}{query}"


async def create_databases(server_url: str, names: list[str], settings: list[str]) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
            for setting in settings:
                key, _, value = setting.partition("=")
                if not key.replace("_", "").replace(".", "").isalnum():
                    raise BenchError(f"bad --pg-set {setting!r}")
                await admin.execute(f'ALTER DATABASE "{name}" SET {key} = $$' + value + "$$")
    finally:
        await admin.close()


async def drop_databases(server_url: str, names: list[str]) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
