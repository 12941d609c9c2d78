"""Issue 9, item 15, as an operator meets it: a command that cannot start says why in one
line on stderr and exits non-zero, with no traceback. Port in use, a database that is
not there or refuses, an embedded PostgreSQL that will not start, unreadable or
malformed keys, bad TLS files; for `cpis serve` and for every admin command."""

from __future__ import annotations

import base64
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _with_database
from tests.e2e.demo_process import EXAMPLES, cpis
from tests.e2e.test_cli_data_dir import one_error_line
from tests.ports import free_port

ADMIN = [
    ["migrate"],
    ["worker"],
    ["upload", str(EXAMPLES / "upload-example.json")],
    ["la", "add", "--ods", "XLA09", "--name", "Ninthshire",
     "--office-phone", "01632 960009", "--edt-phone", "01632 960109"],
    ["la", "update", "--ods", "XLA09", "--name", "Ninthshire"],
    ["client", "deactivate", "--id", "x"],
    ["notifications", "failed"],
    ["purge"],
    ["trace", str(EXAMPLES / "trace-example.csv")],
    ["person-index", "load", str(EXAMPLES / "person-index-example.csv")],
    ["audit", "verify"],
]  # fmt: skip
EVERY = [["serve"], *ADMIN]


def _ids(args: list[str]) -> str:
    return " ".join(args[:2])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A shell with its own data directory, any free port, and JSON logs."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CPIS_")}
    return base | {
        "CPIS_DATA_DIR": str(tmp_path / "data"),
        "CPIS_PORT": "0",
        "CPIS_LOG_FORMAT": "json",
    }


def _env_keys(where: Path) -> dict[str, str]:
    """Key material given as CPIS_KEYS_*, so commands get past the keys to the database."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    def pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    where.mkdir(parents=True, exist_ok=True)
    (where / "signing.pem").write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    (where / "audit.pem").write_bytes(pem(ed25519.Ed25519PrivateKey.generate()))
    return {
        "CPIS_KEYS_DATA": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "CPIS_KEYS_HASH": base64.b64encode(secrets.token_bytes(32)).decode(),
        "CPIS_KEYS_SIGNING": str(where / "signing.pem"),
        "CPIS_KEYS_AUDIT": str(where / "audit.pem"),
    }


async def refused(env: dict[str, str], *args: str) -> str:
    """Run ``cpis ARGS``; it must fail with one error line, which is returned."""
    code, _out, err = await cpis(env, *args)
    assert code != 0, (args, err)
    return one_error_line(err)


@pytest.fixture
def port_in_use() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("command", ["serve", "worker"])
async def test_serve_on_a_port_in_use(
    env: dict[str, str], database_url: str, port_in_use: int, tmp_path: Path, command: str
) -> None:
    """Refused before the database is touched or keys are made (the worker listens for
    its probes and /metrics)."""
    env |= {"CPIS_DATABASE_URL": database_url, "CPIS_PORT": str(port_in_use)}
    line = await refused(env, command)
    assert f"cannot listen on 127.0.0.1:{port_in_use}: address already in use" in line
    assert "CPIS_PORT" in line
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("args", EVERY, ids=_ids)
async def test_a_database_url_nothing_answers_at(
    env: dict[str, str], tmp_path: Path, args: list[str]
) -> None:
    """Named by host, port and database, never by its password."""
    port = free_port()
    env |= {"CPIS_DATABASE_URL": f"postgresql://cpis:s3cret@127.0.0.1:{port}/cpis"}
    env |= _env_keys(tmp_path / "k")
    line = await refused(env, *args)
    assert f"cannot reach the database at 127.0.0.1:{port}/cpis (CPIS_DATABASE_URL)" in line
    assert "connection refused" in line and "s3cret" not in line


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("/cpis_no_such_database", 'refused the connection: database "cpis_no_such_database"'),
        ("notaurl", "CPIS_DATABASE_URL is not a PostgreSQL URL"),
        ("postgresql://u:s3cret@no-such-host.invalid/db", "no such host"),
    ],
    ids=["no such database", "not a url", "no such host"],
)
async def test_a_database_url_that_refuses_or_is_not_one(
    env: dict[str, str], database_url: str, url: str, said: str
) -> None:
    if url.startswith("/"):  # the test server, another database
        url = _with_database(database_url, url.lstrip("/"))
    env |= {"CPIS_DATABASE_URL": url}
    for args in (["serve"], ["migrate"]):
        line = await refused(env, *args)
        assert said in line and "s3cret" not in line


@pytest.mark.parametrize("args", [["serve"], ["notifications", "failed"]], ids=_ids)
async def test_an_embedded_postgresql_that_will_not_start(
    env: dict[str, str], tmp_path: Path, args: list[str]
) -> None:
    """A damaged data directory: the line names the server's log instead of printing it."""
    pg = tmp_path / "data" / "pg"
    pg.mkdir(parents=True)
    (pg / "PG_VERSION").write_text("not a version\n")
    env |= _env_keys(tmp_path / "k")
    line = await refused(env, *args)
    assert f"the embedded PostgreSQL in {pg} did not start; its log is {pg / 'log'}" in line


def _write(path: Path, content: bytes | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        path.mkdir()  # a directory where a file should be: unreadable as one
    else:
        path.write_bytes(content)


@pytest.mark.parametrize(
    ("file", "content", "said"),
    [
        ("hash.key", b"not base64 at all!\n", "hash.key: not valid base64"),
        ("hash.key", base64.b64encode(b"short") + b"\n", "at least 32 bytes"),
        ("data.keys", None, "data.keys: cannot read it: Is a directory"),
        ("data.keys", b"k1 no colon\n", "data.keys: each data key must be kid:base64key"),
        ("data.keys", b"\xff\xfe\x00binary", "data.keys: not a key file"),
        ("signing.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
         "signing.pem: not an unencrypted PEM key"),
        ("signing.pem", b"nothing like a key", "signing.pem: no PEM private key"),
    ],
    ids=["hash not base64", "hash short", "data unreadable", "data malformed", "data binary",
         "signing bad pem", "signing none"],
)  # fmt: skip
async def test_key_files_that_cannot_be_used(
    env: dict[str, str], database_url: str, tmp_path: Path, file: str, content: bytes | None,
    said: str,
) -> None:  # fmt: skip
    """In the data directory's keys: serve (which would make the missing ones) and an
    admin command both name the file and what is wrong with it."""
    env |= {"CPIS_DATABASE_URL": database_url}
    code, _out, err = await cpis(env, "migrate")  # a service set up, keys and all
    assert code == 0, err
    keys = tmp_path / "data" / "keys"
    (keys / file).unlink()
    _write(keys / file, content)
    for args in (["serve"], ["notifications", "failed"]):
        line = await refused(env, *args)
        assert said in line, line


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("CPIS_KEYS_DATA", "nonsense", "CPIS_KEYS_DATA: each data key must be kid:base64key"),
        ("CPIS_KEYS_DATA", "k1:" + base64.b64encode(b"x" * 16).decode(), "must be 32 bytes"),
        ("CPIS_KEYS_HASH", "***", "CPIS_KEYS_HASH: not valid base64"),
        ("CPIS_KEYS_SIGNING", "/no/such/signing.pem", "CPIS_KEYS_SIGNING: cannot read"),
    ],
    ids=["data nonsense", "data short", "hash not base64", "signing missing"],
)
async def test_key_settings_that_cannot_be_used(
    env: dict[str, str], database_url: str, tmp_path: Path, variable: str, value: str, said: str
) -> None:
    env |= {"CPIS_DATABASE_URL": database_url} | _env_keys(tmp_path / "k") | {variable: value}
    for args in (["serve"], ["purge"]):
        line = await refused(env, *args)
        assert said in line, line
        assert value not in line or variable == "CPIS_KEYS_SIGNING"  # no key material shown


@pytest.mark.parametrize(
    ("files", "said"),
    [
        ({"CPIS_TLS_CERT": "missing.pem"}, "CPIS_TLS_CERT: cannot read"),
        ({"CPIS_TLS_CERT": "junk.pem", "CPIS_TLS_KEY": "junk.pem"},
         "CPIS_TLS_CERT and CPIS_TLS_KEY are not a PEM certificate chain"),
        ({"CPIS_TLS_CLIENT_CA": "missing.pem"}, "CPIS_TLS_CLIENT_CA needs CPIS_TLS_CERT"),
    ],
    ids=["cert missing", "cert junk", "client CA alone"],
)  # fmt: skip
async def test_tls_files_that_cannot_be_used(
    env: dict[str, str], database_url: str, tmp_path: Path, files: dict[str, str], said: str
) -> None:
    """Refused before anything starts: no keys are made."""
    (tmp_path / "junk.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n"
    )
    env |= {"CPIS_DATABASE_URL": database_url}
    env |= {name: str(tmp_path / file) for name, file in files.items()}
    line = await refused(env, "serve")
    assert said in line, line
    assert not (tmp_path / "data").exists()
