"""Where the time goes: CPU per request by process, PostgreSQL waits, a py-spy profile.

Used by ``bench/lookup --pg-waits / --py-spy``, and always for the CPU figures.
"""

from __future__ import annotations

import asyncio
import collections
import os
import resource
import shutil
import subprocess
import threading
from pathlib import Path

import asyncpg
from harness import VENV_BIN


def py_spy_record(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(VENV_BIN / "py-spy")
    if not Path(exe).exists():
        print("  (py-spy not found; pip install py-spy into the venv to profile)", flush=True)
        return None
    fmt = {".json": "speedscope", ".txt": "raw"}.get(out.suffix, "flamegraph")
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "200",
            "--format",
            fmt,
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class CpuMeter:
    """CPU time the server, PostgreSQL and wrk spend while the block runs.

    With two cores shared by all three, throughput is set by CPU per request,
    so this says which side a request costs. PostgreSQL is every process in
    ``pg_stat_activity`` (backends and background workers) that /proc can see.
    """

    def __init__(self, server_url: str, server_pid: int) -> None:
        self._url = server_url
        self._server_pid = server_pid
        self.seconds: dict[str, float] = {}

    @staticmethod
    def _cpu(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _postgres_pids(self) -> list[int]:
        async def query() -> list[int]:
            conn = await asyncpg.connect(self._url)
            try:
                return [r["pid"] for r in await conn.fetch("SELECT pid FROM pg_stat_activity")]
            finally:
                await conn.close()

        return asyncio.run(query())

    def _sample(self) -> dict[str, float]:
        return {
            "server": self._cpu(self._server_pid),
            "postgres": sum(self._cpu(pid) for pid in self._pg_pids),
            "wrk": resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
            + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime,
        }

    def __enter__(self) -> CpuMeter:
        self._pg_pids = self._postgres_pids()
        self._before = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        after = self._sample()
        self.seconds = {k: after[k] - self._before[k] for k in after}

    def per_request_ms(self, requests: int) -> dict[str, float]:
        return {k: round(1000 * v / max(requests, 1), 3) for k, v in self.seconds.items()}


class WaitSampler:
    """What the service's database sessions are doing, sampled every 20 ms.

    Tells lock waits (``Lock:transactionid``, ``Lock:tuple``), commit flushes
    (``IO:WALSync``, ``LWLock:WALWrite``) and sessions idle in a transaction
    (waiting on the Python side) apart, which a Python profile cannot.
    """

    def __init__(self, server_url: str, database: str) -> None:
        self._url = server_url
        self._db = database
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._sample()), daemon=True)
        self.counts: collections.Counter[str] = collections.Counter()
        self.samples = 0

    async def _sample(self) -> None:
        conn = await asyncpg.connect(self._url)
        try:
            while not self._stop.is_set():
                rows = await conn.fetch(
                    "SELECT state, wait_event_type, wait_event,"
                    " left(regexp_replace(query, '\\s+', ' ', 'g'), 36) AS query"
                    " FROM pg_stat_activity"
                    " WHERE datname = $1 AND pid <> pg_backend_pid()"
                    " AND backend_type = 'client backend'",
                    self._db,
                )
                self.samples += 1
                for r in rows:
                    wait = f"{r['wait_event_type']}:{r['wait_event']}" if r["wait_event"] else "CPU"
                    self.counts[f"{r['state']} / {wait} / {r['query']}"] += 1
                await asyncio.sleep(0.02)
        finally:
            await conn.close()

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def print(self) -> None:
        total = sum(self.counts.values()) or 1
        print(f"  service db sessions over {self.samples} samples (state / wait / statement):")
        for key, n in self.counts.most_common(12):
            print(f"    {100 * n / total:5.1f}%  {key}")
