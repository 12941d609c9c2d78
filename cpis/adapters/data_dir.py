"""Where a command finds the service's data, and what it says when it cannot (issue 9,
items 12 and 15).

Only ``cpis serve`` and ``cpis migrate`` may set up a new service: a data
directory with an embedded PostgreSQL and generated keys. Every other command
works on the data of the service that is already there, so with nothing there
it refuses, naming the directory it looked in and how to point it at the right
one, instead of quietly creating an empty database and answering from it.

Failing to reach a database is said in one line too, naming it without its
password (:func:`database_name`; the line is made where the pool is opened,
:func:`cpis.adapters.postgres.open_pool`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cpis.adapters.keys import missing_key_files
from cpis.errors import StartupError
from cpis.settings import Settings

SET_UP_BY = "only `cpis serve` and `cpis migrate` set up a new one"


def _absolute(path: Path) -> Path:
    return path.expanduser().absolute()


def embedded_data(settings: Settings) -> Path:
    """The embedded PostgreSQL's data directory (see :mod:`cpis.adapters.embedded`)."""
    return _absolute(settings.data_dir) / "pg"


def require_service_data(settings: Settings) -> None:
    """Refuse, before starting or writing anything, unless the service's database and
    keys are where this command was told to look."""
    data_dir = _absolute(settings.data_dir)
    if settings.database_url is None and not (embedded_data(settings) / "PG_VERSION").exists():
        raise StartupError(
            f"no CP-IS database in {data_dir} (CPIS_DATA_DIR): run this where `cpis serve`"
            " runs, or set CPIS_DATA_DIR to the data directory it uses (or CPIS_DATABASE_URL"
            f" to its database); {SET_UP_BY}"
        )
    require_keys(settings)


def require_keys(settings: Settings) -> None:
    """Refuse unless every key file this command would read is there."""
    data_dir = _absolute(settings.data_dir)
    missing = missing_key_files(settings)
    if missing:
        raise StartupError(
            f"no keys in {data_dir / 'keys'} ({', '.join(p.name for p in missing)} missing):"
            " set CPIS_DATA_DIR to the data directory `cpis serve` uses, or give its keys in"
            f" CPIS_KEYS_DATA, CPIS_KEYS_HASH, CPIS_KEYS_SIGNING and CPIS_KEYS_AUDIT; {SET_UP_BY}"
        )


def key_source(settings: Settings) -> str:
    """Where this process's keys come from, for messages."""
    given = {
        "CPIS_KEYS_DATA": settings.keys_data,
        "CPIS_KEYS_HASH": settings.keys_hash,
        "CPIS_KEYS_SIGNING": settings.keys_signing,
    }
    env = [name for name, value in given.items() if value is not None]
    keys_dir = str(_absolute(settings.keys_dir))
    if len(env) == len(given):
        return ", ".join(env)
    return " and ".join([keys_dir, *env])


def database_name(settings: Settings) -> str:
    """The database this process uses, for messages: never the URL's password."""
    if settings.database_url is None:
        return f"the embedded PostgreSQL in {embedded_data(settings)}"
    try:
        parts = urlsplit(settings.database_url.reveal())
        socket_dir = parse_qs(parts.query).get("host", [""])[0]  # ?host=/run/postgresql
        host = parts.hostname or socket_dir or "localhost"
        where = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "the database CPIS_DATABASE_URL names"
    return f"the database at {where}{parts.path} (CPIS_DATABASE_URL)"
