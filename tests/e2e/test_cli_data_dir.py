"""Issue 9, item 12, as an operator meets it: an admin command run where the service's
data is not never sets up a second database or new keys and answers from them. It
refuses in one line naming where it looked and how to point it at the service; and a
command holding keys other than the ones the database was set up with is refused too.
Only `cpis serve` and `cpis migrate` set a service up."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import structlog

from cpis.adapters.keys import load_keys
from cpis.settings import Settings
from tests.e2e.demo_process import EXAMPLES

ADMIN_COMMANDS = [
    ["notifications", "failed"],
    ["upload", str(EXAMPLES / "upload-example.json")],
    ["la", "add", "--ods", "XLA09", "--name", "Ninthshire",
     "--office-phone", "01632 960009", "--edt-phone", "01632 960109"],
    ["client", "deactivate", "--id", "demo-ed"],
    ["purge"],
    ["audit", "verify"],
    ["person-index", "load", str(EXAMPLES / "person-index-example.csv")],
    ["keys", "rotate", "data"],
]  # fmt: skip


def _bare_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith("CPIS_") and k != "XDG_RUNTIME_DIR"
    }


async def _in(cwd: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cpis", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


def one_error_line(err: str) -> str:
    """The single ``error:`` line on stderr (log lines, JSON, may stand beside it)."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize("args", ADMIN_COMMANDS, ids=lambda a: " ".join(a[:2]))
async def test_an_admin_command_elsewhere_refuses_instead_of_setting_up(
    tmp_path: Path, args: list[str]
) -> None:
    """Run from a directory with no `.cpis` and no CPIS_DATA_DIR: it says which directory
    it looked in and how to point it at the service, and creates nothing there."""
    code, out, err = await _in(tmp_path, _bare_env(), *args)
    assert code != 0
    line = one_error_line(err)
    assert f"no CP-IS database in {tmp_path / '.cpis'}" in line or (
        f"{tmp_path / '.cpis' / 'keys'}" in line
    ), line
    assert "CPIS_DATA_DIR" in line and "cpis serve" in line
    assert "no failed deliveries" not in out
    assert list(tmp_path.iterdir()) == []


async def test_with_a_database_url_missing_keys_are_not_made(
    tmp_path: Path, database_url: str
) -> None:
    """CPIS_DATABASE_URL names the database but this directory has none of its keys: the
    command refuses rather than sealing with keys of its own."""
    env = _bare_env() | {"CPIS_DATABASE_URL": database_url, "CPIS_DATA_DIR": str(tmp_path / "d")}
    code, _out, err = await _in(tmp_path, env, "notifications", "failed")
    assert code != 0
    assert f"no keys in {tmp_path / 'd' / 'keys'}" in one_error_line(err)
    assert not (tmp_path / "d").exists()


async def test_keys_other_than_the_databases_are_refused(tmp_path: Path, database_url: str) -> None:
    """The service is set up in one directory (`cpis migrate`); another directory with keys
    of its own (an old demo, say) pointed at the same database is refused, whether it runs
    an admin command or `cpis migrate` or `cpis serve`, and one with no keys is not given
    new ones even by `migrate`."""
    # CPIS_PORT=0: `serve` must fail on its keys, not on a port another program has.
    env = _bare_env() | {
        "CPIS_DATABASE_URL": database_url,
        "CPIS_LOG_FORMAT": "json",
        "CPIS_PORT": "0",
    }
    service, other, empty = tmp_path / "service", tmp_path / "other", tmp_path / "empty"
    code, out, err = await _in(tmp_path, env | {"CPIS_DATA_DIR": str(service)}, "migrate")
    assert code == 0, err
    load_keys(Settings(data_dir=other), log=structlog.get_logger())  # keys of its own
    for args in (["notifications", "failed"], ["migrate"], ["serve"]):
        code, _out, err = await _in(tmp_path, env | {"CPIS_DATA_DIR": str(other)}, *args)
        assert code != 0, args
        line = one_error_line(err)
        assert "another hash key" in line and str(other / "keys") in line, line
    code, _out, err = await _in(tmp_path, env | {"CPIS_DATA_DIR": str(empty)}, "migrate")
    assert code != 0
    assert "was set up with keys" in one_error_line(err)
    assert not (empty / "keys").exists()
    code, out, err = await _in(
        tmp_path, env | {"CPIS_DATA_DIR": str(service)}, "notifications", "failed"
    )
    assert (code, out.strip()) == (0, "no failed deliveries"), err
