"""A real Patroni cluster for the failover tests: one etcd and three PostgreSQL nodes.

Debian's packages: ``patroni`` (3.0.2), ``etcd-server`` (3.4.23) and the system's
PostgreSQL server (``make test-packages`` installs what is missing). Not PyPI's
patroni: this virtualenv's python links into /root/.pyenv, which the ``postgres``
user cannot enter (/root is mode 700), while Debian's patroni runs on
/usr/bin/python3. Not the embedded wheel's PostgreSQL 18 either: Patroni 3.0 was
never tested with it.

PostgreSQL refuses to run as root, so when the tests run as root every process
here runs as Debian's ``postgres`` user (``setpriv``), in a new
``/tmp/cpis-patroni-*`` directory owned by that user, with a private
``XDG_RUNTIME_DIR``; ports are free ones on 127.0.0.1. Patroni's configuration
is written as JSON, which YAML reads.

The cluster runs in synchronous mode, strict (a commit waits for a synchronous
standby, so an acknowledged commit is on the standby Patroni may promote), with
a short ttl and loop so a failover takes seconds, not half a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.polling import wait_until
from tests.ports import free_port

# A throwaway cluster on loopback, removed when the test ends.
SUPERUSER_PASSWORD = "patroni-superuser"
REPLICATION_PASSWORD = "patroni-replication"
SERVICE_PASSWORD = "cpis-password"
SCOPE = "cpis"

# Patroni's timing (its "dynamic configuration"): the leader key lives ``ttl``
# seconds unless renewed; each node runs its loop every ``loop_wait``; a DCS or
# PostgreSQL call is retried for ``retry_timeout``. Patroni requires
# loop_wait + 2 * retry_timeout <= ttl.
DCS = {
    "ttl": 10,
    "loop_wait": 1,
    "retry_timeout": 3,
    "maximum_lag_on_failover": 1048576,
    "synchronous_mode": True,
    "synchronous_mode_strict": True,
    "postgresql": {
        "use_pg_rewind": True,
        "parameters": {
            # PostgreSQL's 5 s default made a standby wait that long before it
            # looked for the new primary's WAL again; lookups took ~2 s longer to
            # recover after a failover.
            "wal_retrieve_retry_interval": "1s",
            "max_connections": 100,
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "wal_keep_size": "128MB",
            "hot_standby": "on",
        },
    },
}


def postgres_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL server's bin directory, if one is installed."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def missing_packages() -> list[str]:
    """The Debian packages the cluster needs that are not installed."""
    missing = [
        package
        for command, package in (("patroni", "patroni"), ("etcd", "etcd-server"))
        if shutil.which(command) is None
    ]
    if postgres_bin_dir() is None:
        missing.append("postgresql")
    return missing


def _as_cluster_user() -> tuple[list[str], int, int]:
    """How to run a program as the cluster's user: (command prefix, uid, gid)."""
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    user = pwd.getpwnam("postgres")
    return (
        ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"],
        user.pw_uid,
        user.pw_gid,
    )


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a postmaster's backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _ours(root: Path) -> list[int]:
    """Every process whose command line names the cluster's directory."""
    found = []
    marker = str(root).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


def _is_postgres(pid: int) -> bool:
    """Whether ``pid`` is (still) a PostgreSQL process: a frozen backend resumed may have
    exited since, and its number been given to another process."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().startswith(b"postgres")
    except OSError:
        return False


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@dataclass
class Node:
    """One PostgreSQL server and the Patroni that manages it."""

    name: str
    dir: Path
    pg_port: int
    api_port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.pg_port}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None

    def log(self) -> str:
        return (self.dir / "patroni.log").read_text(errors="replace")


@dataclass
class Cluster:
    """etcd and the Patroni nodes, under ``root``; :meth:`start` then :meth:`stop`."""

    root: Path
    nodes: list[Node]
    etcd_port: int
    etcd_peer_port: int
    etcd: asyncio.subprocess.Process | None = None
    bin_dir: Path = field(default_factory=lambda: postgres_bin_dir() or Path("/nonexistent"))
    # What freeze() stopped: a backend's title ("postgres: cpis: ...") does not name the
    # cluster's directory, so _ours() cannot find it, and one left stopped outlives
    # the run (its postmaster killed, itself never resumed).
    frozen: set[int] = field(default_factory=set)

    @classmethod
    def create(cls, size: int = 3) -> Cluster:
        _prefix, uid, gid = _as_cluster_user()
        root = Path(tempfile.mkdtemp(prefix="cpis-patroni-", dir="/tmp"))
        names = [f"node{n}" for n in range(1, size + 1)]
        nodes = [Node(name, root / name, free_port(), free_port()) for name in names]
        for where in [root, root / "run", root / "etcd", *(n.dir for n in nodes)]:
            where.mkdir(mode=0o700, exist_ok=True)
            os.chown(where, uid, gid)
        return cls(root, nodes, free_port(), free_port())

    # --- starting ---------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.root),
            "XDG_RUNTIME_DIR": str(self.root / "run"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }

    async def _spawn(self, args: list[str], log: Path) -> asyncio.subprocess.Process:
        prefix, uid, gid = _as_cluster_user()
        with log.open("ab") as out:
            os.chown(log, uid, gid)
            return await asyncio.create_subprocess_exec(
                *prefix, *args, env=self._env(), cwd=self.root, stdout=out, stderr=out,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def _config(self, node: Node) -> dict[str, Any]:
        return {
            "scope": SCOPE,
            "namespace": "/service/",
            "name": node.name,
            "restapi": {
                "listen": f"127.0.0.1:{node.api_port}",
                "connect_address": f"127.0.0.1:{node.api_port}",
            },
            "etcd3": {"host": f"127.0.0.1:{self.etcd_port}"},
            "watchdog": {"mode": "off"},  # no /dev/watchdog here
            "bootstrap": {"dcs": DCS, "initdb": [{"encoding": "UTF8"}, "data-checksums"]},
            "postgresql": {
                "listen": node.address,
                "connect_address": node.address,
                "data_dir": str(node.dir / "data"),
                "bin_dir": str(self.bin_dir),
                "pgpass": str(node.dir / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": SUPERUSER_PASSWORD},
                    "replication": {"username": "replicator", "password": REPLICATION_PASSWORD},
                },
                "parameters": {"unix_socket_directories": str(node.dir)},
                "pg_hba": [
                    "local all all trust",
                    "host replication replicator 127.0.0.1/32 scram-sha-256",
                    "host all all 127.0.0.1/32 scram-sha-256",
                ],
            },
        }

    async def start(self) -> None:
        """etcd, then every node; returns once there is a leader streaming to a
        synchronous standby and a second standby, and the service's role and
        database exist."""
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        self.etcd = await self._spawn(
            [
                "etcd", "--name", "etcd0", "--data-dir", str(self.root / "etcd" / "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"etcd0={peer}", "--initial-cluster-state", "new",
                "--log-level", "warn",
            ],
            self.root / "etcd" / "etcd.log",
        )  # fmt: skip

        async def etcd_up() -> bool:
            assert self.etcd is not None and self.etcd.returncode is None, self.etcd_log()
            try:
                async with aiohttp.ClientSession() as http, http.get(f"{client}/health") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(etcd_up, limit=30, what="etcd to answer")
        _prefix, uid, gid = _as_cluster_user()
        for node in self.nodes:
            config = node.dir / "patroni.yml"
            config.write_text(json.dumps(self._config(node), indent=1))
            os.chown(config, uid, gid)
            node.process = await self._spawn(["patroni", str(config)], node.dir / "patroni.log")
        await wait_until(self.healthy, limit=120, what="the Patroni cluster to be streaming")
        leader = await self.leader()
        assert leader is not None
        conn = await self.superuser(leader)
        try:
            await conn.execute(f"CREATE ROLE cpis LOGIN PASSWORD '{SERVICE_PASSWORD}'")
            await conn.execute("CREATE DATABASE cpis OWNER cpis")
        finally:
            await conn.close()

    def etcd_log(self) -> str:
        return (self.root / "etcd" / "etcd.log").read_text(errors="replace")

    # --- what it is doing -------------------------------------------------------

    async def members(self, among: list[Node] | None = None) -> list[dict[str, Any]]:
        """Patroni's view of the cluster (``GET /cluster``) from the first node of
        ``among`` (default: all) that answers; empty if none does."""
        timeout = aiohttp.ClientTimeout(total=1)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            for node in among or self.nodes:
                try:
                    async with http.get(f"{node.api}/cluster") as r:
                        if r.status == 200:
                            members: list[dict[str, Any]] = (await r.json())["members"]
                            return members
                except (aiohttp.ClientError, TimeoutError):
                    continue
        return []

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    async def leader(self, among: list[Node] | None = None) -> Node | None:
        """The running leader, as the nodes ``among`` see it."""
        for m in await self.members(among):
            if m["role"] == "leader" and m["state"] == "running":
                return self.node(m["name"])
        return None

    async def sync_standby(self) -> Node | None:
        for m in await self.members():
            if m["role"] == "sync_standby":
                return self.node(m["name"])
        return None

    async def superuser(self, node: Node) -> asyncpg.Connection:
        return await asyncpg.connect(
            host="127.0.0.1", port=node.pg_port, user="postgres",
            password=SUPERUSER_PASSWORD, database="postgres", timeout=5,
        )  # fmt: skip

    async def healthy(self) -> bool:
        """A leader replicating to every other node, one of them synchronously, and
        Patroni knowing which (only that standby may be promoted)."""
        for node in self.nodes:
            assert node.process is not None and node.process.returncode is None, node.log()
        leader = await self.leader()
        if leader is None or await self.sync_standby() is None:
            return False
        try:
            conn = await self.superuser(leader)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        try:
            rows = await conn.fetch("SELECT state, sync_state FROM pg_stat_replication")
        finally:
            await conn.close()
        states = sorted((r["state"], r["sync_state"]) for r in rows)
        others = len(self.nodes) - 1
        return (
            len(states) == others
            and all(s == "streaming" for s, _ in states)
            and any(sync == "sync" for _, sync in states)
        )

    def service_url(self, *, first: Node | None = None) -> str:
        """What ``CPIS_DATABASE_URL`` is for the service: every node (``first`` first),
        read-write."""
        ordered = sorted(self.nodes, key=lambda n: n is not first)
        hosts = ",".join(n.address for n in ordered)
        return f"postgresql://cpis:{SERVICE_PASSWORD}@{hosts}/cpis?target_session_attrs=read-write"

    def node_url(self, node: Node) -> str:
        """The service's database on one node only (the test's own checks: asyncpg's
        multi-host connect would wait on a silent node for its whole timeout)."""
        return f"postgresql://cpis:{SERVICE_PASSWORD}@{node.address}/cpis"

    # --- breaking and stopping it ----------------------------------------------

    def kill(self, node: Node) -> float:
        """SIGKILL the node's Patroni, its postmaster and every backend at once, as a
        machine dying does; the monotonic time it was done."""
        pids = [node.process.pid] if node.process is not None else []
        postmaster = node.postmaster_pid()
        if postmaster is not None:
            pids += [postmaster, *_children(postmaster)]
        _signal(pids, signal.SIGKILL)
        return time.monotonic()

    def freeze(self, node: Node) -> float:
        """SIGSTOP the node's Patroni, postmaster and backends: a machine gone silent
        (no reset: its sockets stay open and accept connections nobody answers)."""
        pids = [node.process.pid] if node.process is not None else []
        postmaster = node.postmaster_pid()
        if postmaster is not None:
            pids += [postmaster, *_children(postmaster)]
        self.frozen.update(pids)
        _signal(pids, signal.SIGSTOP)
        return time.monotonic()

    async def stop(self) -> None:
        """SIGTERM every process (Patroni stops its PostgreSQL), SIGKILL what is left
        after 15 s, and remove the directory."""
        started = time.monotonic()
        ours = _ours(self.root)
        # a frozen node must be able to hear SIGTERM, and its backends their postmaster's
        # death
        _signal([*ours, *self.frozen], signal.SIGCONT)
        processes = [n.process for n in self.nodes if n.process is not None]
        _signal([p.pid for p in processes if p.returncode is None], signal.SIGTERM)
        for p in processes:
            left = max(0.1, 15 - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(p.wait(), timeout=left)
        if self.etcd is not None and self.etcd.returncode is None:
            self.etcd.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.etcd.wait(), timeout=5)
        _signal(_ours(self.root), signal.SIGKILL)
        _signal([pid for pid in self.frozen if _is_postgres(pid)], signal.SIGKILL)
        for p in [*processes, *([self.etcd] if self.etcd else [])]:
            if p.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(p.wait(), timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)
