"""Upload files through MESH (SPEC §5), on NHS England's real mesh-sandbox and a real
PostgreSQL: an LA's mailbox sends its daily file to CP-IS's mailbox with workflow id
CPIS_UPLOAD, the poller inside the service applies it as ``POST /la/v1/uploads`` would,
and the acknowledgement comes back to the LA's mailbox as CPIS_UPLOAD_ACK.

Most tests run the service as ``cpis serve`` does (``create_app``'s background tasks,
started by an aiohttp runner); the ones about failures and replicas drive the poller
from ``cpis.app.build_mesh_uploads`` one poll at a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from cpis.adapters.mesh import MeshClient
from cpis.adapters.postgres import PgMeshSenders
from cpis.app import Runtime, Start, build, build_mesh_uploads, create_app
from cpis.errors import MeshError, SettingsError
from cpis.formats.acknowledgement import acknowledgement_json
from cpis.model import LocalAuthority
from cpis.model.uploads import MeshMessage
from cpis.settings import Secret, Settings
from cpis.workers.mesh_uploads import ACK_WORKFLOW, UNKNOWN_SENDER, UPLOAD_WORKFLOW, MeshUploads
from tests.mesh_sandbox import MeshSandbox
from tests.polling import wait_until
from tests.ports import free_port

CPIS_COMMAND = [sys.executable, "-m", "cpis"]
CPIS = "X26ABC1"  # the service's own mailbox
LA_BOX = "X26ABC2"  # Demoshire's case management system
OTHER_BOX = "X26ABC3"  # another LA's (or nobody's) mailbox
EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
JSON_EXAMPLE = (EXAMPLES / "upload-example.json").read_bytes()
CSV_EXAMPLE = (EXAMPLES / "upload-example.csv").read_bytes()
EXAMPLE_PLANS = {"DEMO-CPP-0001": "9990000018", "DEMO-LAC-0002": "9990000026",
                 "DEMO-UCPP-0003": "9990000034"}  # fmt: skip
PERSONAL = (*EXAMPLE_PLANS.values(), "Testchild", "Examplefamily", "2016-07-14")
DEMO = LocalAuthority("XDM01", "Demoshire County Council", "01632 960000", "01632 960999", 24)
OTHER = LocalAuthority("XLA02", "Southborough Borough Council", "01632 960002", "01632 960102", 24)


@pytest.fixture
async def la_box(clean: MeshSandbox) -> AsyncIterator[MeshClient]:
    async with MeshClient(**clean.client_kwargs(LA_BOX), timeout=5) as client:
        yield client


@pytest.fixture
async def other_box(clean: MeshSandbox) -> AsyncIterator[MeshClient]:
    async with MeshClient(**clean.client_kwargs(OTHER_BOX), timeout=5) as client:
        yield client


@pytest.fixture
async def cpis_box(clean: MeshSandbox) -> AsyncIterator[MeshClient]:
    """CP-IS's own mailbox, to see what is left in its inbox."""
    async with MeshClient(**clean.client_kwargs(CPIS), timeout=5) as client:
        yield client


def settings_for(box: MeshSandbox, tmp_path: Path, database_url: str, **extra: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=Secret(database_url),
        db_pool_min=1,
        db_pool_max=4,
        mesh_url=box.base_url,
        mesh_mailbox=CPIS,
        mesh_password=Secret(box.passwords[CPIS]),
        mesh_shared_key=Secret(box.shared_key),
        mesh_poll_seconds=0.05,
        **extra,
    )


async def register(rt: Runtime, *, other_la: bool = False) -> None:
    """What `cpis la add` and `cpis la mesh` do: Demoshire's CMS sends from LA_BOX."""
    await rt.db.upsert_la(DEMO)
    await rt.db.set_la_mesh(DEMO.ods_code, LA_BOX, "CPIS_NOTIFICATION")
    if other_la:
        await rt.db.upsert_la(OTHER)
        await rt.db.set_la_mesh(OTHER.ods_code, OTHER_BOX, "CPIS_NOTIFICATION")


@asynccontextmanager
async def serving(settings: Settings, *, other_la: bool = False) -> AsyncIterator[Runtime]:
    """The service as `cpis serve` runs it, background tasks and all (no socket needed)."""
    async with build(settings, start=Start.SERVE) as rt:
        await register(rt, other_la=other_la)
        runner = web.AppRunner(create_app(rt), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            yield rt
        finally:
            await runner.cleanup()


@pytest.fixture
async def service(clean: MeshSandbox, tmp_path: Path, database_url: str) -> AsyncIterator[Runtime]:
    async with serving(settings_for(clean, tmp_path, database_url), other_la=True) as rt:
        yield rt


def example(sequence: int) -> bytes:
    doc = json.loads(JSON_EXAMPLE)
    doc["sequence"] = sequence
    return json.dumps(doc).encode()


async def send_file(
    box: MeshClient,
    body: bytes,
    *,
    filename: str | None = None,
    content_type: str = "application/octet-stream",
    workflow_id: str = UPLOAD_WORKFLOW,
) -> str:
    return await box.send_message(
        recipient=CPIS,
        workflow_id=workflow_id,
        body=body,
        subject="daily plans",
        local_id="cms-run-1",
        filename=filename,
        content_type=content_type,
    )


async def receive(box: MeshClient) -> MeshMessage:
    """The next message in ``box``'s inbox, waited for, read and acknowledged."""
    ids: list[str] = []

    async def arrived() -> bool:
        ids[:] = await box.list_inbox()
        return bool(ids)

    await wait_until(arrived, what=f"a message in {box.mailbox_id}")
    message = await box.read_message(ids[0])
    await box.acknowledge(ids[0])
    return message


def body(message: MeshMessage) -> dict[str, Any]:
    doc = orjson.loads(message.body)
    assert isinstance(doc, dict)
    return doc


async def stored_ack(rt: Runtime, la: str, sequence: int) -> dict[str, Any] | None:
    async with rt.db.transaction() as tx:
        ack = await tx.upload_acknowledgement(la, sequence)
    return None if ack is None else dict(acknowledgement_json(ack))


async def count(rt: Runtime, table: str) -> int:
    return int(await rt.pool.fetchval(f"SELECT count(*) FROM {table}"))


async def inbox_empty(box: MeshClient) -> None:
    async def empty() -> bool:
        return not await box.list_inbox()

    await wait_until(empty, what="the CP-IS inbox to empty")


async def test_json_example_becomes_plans_and_the_la_mailbox_gets_the_acknowledgement(
    service: Runtime, la_box: MeshClient, cpis_box: MeshClient
) -> None:
    """The JSON example sent from Demoshire's mailbox is applied (three plans stored,
    the delete of an unknown plan refused: CPF03), the acknowledgement the HTTP API
    would give comes back as CPIS_UPLOAD_ACK tied to the incoming message, the
    incoming message leaves CP-IS's inbox, and no log line carries personal data."""
    with capture_logs() as logs:
        sent = await send_file(la_box, JSON_EXAMPLE, filename="upload-example.json")
        ack = await receive(la_box)
        await inbox_empty(cpis_box)

    assert ack.sender == CPIS
    assert ack.workflow_id == ACK_WORKFLOW
    assert ack.local_id == sent
    assert ack.subject is not None and "XDM01" in ack.subject and "42" in ack.subject
    assert ack.content_type == "application/json"
    doc = body(ack)
    assert doc["file_code"] == "CPF03"
    assert [(r["plan_id"], r["code"]) for r in doc["records"]] == [
        ("DEMO-CPP-0001", "CPR06"), ("DEMO-LAC-0002", "CPR06"),
        ("DEMO-UCPP-0003", "CPR06"), ("DEMO-CPP-0099", "CPR07"),
    ]  # fmt: skip
    assert doc == await stored_ack(service, "XDM01", 42)
    async with service.db.transaction() as tx:
        for plan_id, nhs in EXAMPLE_PLANS.items():
            plan = await tx.get_plan("XDM01", plan_id)
            assert plan is not None and plan.nhs_number == nhs and plan.version == 1
    events = {e["event"] for e in logs}
    assert "mesh_upload_acknowledged" in events
    assert not any(p in repr(logs) for p in PERSONAL)
    assert "daily plans" not in repr(logs) and "cms-run-1" not in repr(logs)


async def test_csv_example_is_recognised_without_a_file_name_and_applied(
    service: Runtime, la_box: MeshClient
) -> None:
    """The CSV example, sent as application/octet-stream with no file name, is told
    from JSON by its first byte, applied, and acknowledged with records numbered by line."""
    await send_file(la_box, CSV_EXAMPLE)
    doc = body(await receive(la_box))

    assert doc["file_code"] == "CPF03"
    assert [(r["record"], r["code"]) for r in doc["records"]] == [
        (6, "CPR06"), (7, "CPR06"), (8, "CPR06"), (9, "CPR07")
    ]  # fmt: skip
    async with service.db.transaction() as tx:
        assert await tx.get_plan("XDM01", "DEMO-UCPP-0003") is not None


async def test_a_resent_file_gets_the_same_acknowledgement_and_changes_nothing(
    service: Runtime, la_box: MeshClient
) -> None:
    """Sequence 42 twice: the second message gets the first one's acknowledgement
    (same received_at) and every plan is still at version 1; a lower sequence is CPF04."""
    await send_file(la_box, JSON_EXAMPLE, filename="upload-example.json")
    first = body(await receive(la_box))
    await send_file(la_box, JSON_EXAMPLE, filename="upload-example.json")
    second = body(await receive(la_box))
    await send_file(la_box, example(41), filename="upload-41.json")
    lower = body(await receive(la_box))

    assert second == first
    assert await count(service, "plan_version") == 3
    assert await count(service, "upload") == 1
    assert lower["file_code"] == "CPF04" and lower["records"] == []
    assert "lower than the last applied" in lower["reason"]


async def test_a_file_for_another_la_gets_cpf01_and_changes_nothing(
    service: Runtime, other_box: MeshClient, cpis_box: MeshClient
) -> None:
    """Southborough's mailbox sends Demoshire's file: CPF01 back to Southborough,
    no plan stored, no sequence used up, the message gone from the inbox."""
    sent = await send_file(other_box, JSON_EXAMPLE, filename="upload-example.json")
    ack = await receive(other_box)
    await inbox_empty(cpis_box)

    assert ack.local_id == sent and ack.workflow_id == ACK_WORKFLOW
    doc = body(ack)
    assert doc["file_code"] == "CPF01" and doc["records"] == []
    assert "la_ods" in doc["reason"]
    assert await count(service, "plan") == 0
    assert await count(service, "upload") == 0


@pytest.mark.parametrize(
    ("data", "filename", "reason"),
    [
        (b"\x00\xff\xfe\x81 not a file", None, "not UTF-8"),
        (JSON_EXAMPLE[: len(JSON_EXAMPLE) // 2], "upload-example.json", "not valid JSON"),
        (CSV_EXAMPLE[: CSV_EXAMPLE.rindex(b"delete")], "upload.csv", "#records says"),
    ],
    ids=["garbage", "truncated-json", "truncated-csv"],
)
async def test_a_malformed_file_gets_cpf01_and_changes_nothing(
    service: Runtime, la_box: MeshClient, data: bytes, filename: str | None, reason: str
) -> None:
    """Bytes that are no upload file, or a file cut short, get CPF01 with a reason."""
    await send_file(la_box, data, filename=filename)
    doc = body(await receive(la_box))

    assert doc["file_code"] == "CPF01"
    assert reason in doc["reason"]
    assert await count(service, "plan") == 0
    assert await count(service, "upload") == 0


async def test_an_unknown_sender_is_told_and_its_message_does_not_come_back(
    clean: MeshSandbox,
    tmp_path: Path,
    database_url: str,
    other_box: MeshClient,
    cpis_box: MeshClient,
) -> None:
    """A mailbox registered to no LA gets CPF01 saying so; its message is acknowledged
    (not read again at every poll) and nothing is applied."""
    async with serving(settings_for(clean, tmp_path, database_url)) as rt:
        with capture_logs() as logs:
            sent = await send_file(other_box, JSON_EXAMPLE, filename="upload-example.json")
            ack = await receive(other_box)
            await inbox_empty(cpis_box)

        assert ack.local_id == sent
        assert body(ack) == {"file_code": "CPF01", "reason": UNKNOWN_SENDER, "records": []}
        assert await count(rt, "plan") == 0
        warned = [e for e in logs if e["event"] == "mesh_upload_unknown_sender"]
        assert [e["sender"] for e in warned] == [OTHER_BOX]


async def test_other_workflows_are_left_in_the_inbox_and_logged_once(
    service: Runtime, la_box: MeshClient, cpis_box: MeshClient
) -> None:
    """A message with another workflow id stays in CP-IS's inbox through many polls,
    is logged once, and does not hold up the uploads behind it."""
    with capture_logs() as logs:
        other = await send_file(la_box, b'{"hello": 1}', workflow_id="SOME_OTHER_FLOW")
        await send_file(la_box, example(42), filename="a.json")
        assert body(await receive(la_box))["sequence"] == 42
        await send_file(la_box, example(43), filename="b.json")
        assert body(await receive(la_box))["sequence"] == 43

    assert await cpis_box.list_inbox() == [other]
    ignored = [e for e in logs if e["event"] == "mesh_message_ignored"]
    assert [(e["message_id"], e["workflow_id"]) for e in ignored] == [(other, "SOME_OTHER_FLOW")]


async def test_an_oversize_file_gets_cpf01_and_is_acknowledged(
    clean: MeshSandbox,
    tmp_path: Path,
    database_url: str,
    la_box: MeshClient,
    cpis_box: MeshClient,
) -> None:
    """A message over CPIS_MAX_UPLOAD_BYTES is refused whole (CPF01) and removed."""
    settings = settings_for(clean, tmp_path, database_url, max_upload_bytes=512)
    async with serving(settings) as rt:
        await send_file(la_box, JSON_EXAMPLE, filename="upload-example.json")
        doc = body(await receive(la_box))
        await inbox_empty(cpis_box)

        assert doc["file_code"] == "CPF01" and "512 bytes" in doc["reason"]
        assert await count(rt, "plan") == 0


async def test_an_unavailable_person_index_gets_cpf05_and_the_file_can_be_resent(
    clean: MeshSandbox, tmp_path: Path, database_url: str, la_box: MeshClient
) -> None:
    """With the PDS person index unreachable the file gets CPF05, nothing is applied
    and the sequence is not used up."""
    settings = settings_for(
        clean, tmp_path, database_url, person_index="pds",
        pds_url=f"http://127.0.0.1:{free_port()}/FHIR/R4",
    )  # fmt: skip
    async with serving(settings) as rt:
        await send_file(la_box, JSON_EXAMPLE, filename="upload-example.json")
        doc = body(await receive(la_box))

        assert doc["file_code"] == "CPF05" and doc["records"] == []
        assert await count(rt, "plan") == 0
        assert await count(rt, "upload") == 0


# --- failures and replicas, one poll at a time -------------------------------------------------


@pytest.fixture
async def runtime(clean: MeshSandbox, tmp_path: Path, database_url: str) -> AsyncIterator[Runtime]:
    """A runtime with no background poller: the tests below poll by hand."""
    async with build(settings_for(clean, tmp_path, database_url), start=Start.SERVE) as rt:
        await register(rt)
        yield rt


class FailingSends:
    """Our mailbox, except that the first ``failures`` sends fail as MESH outages do."""

    def __init__(self, inner: MeshClient, failures: int) -> None:
        self._inner = inner
        self.failures = failures
        self.list_inbox = inner.list_inbox
        self.read_message = inner.read_message
        self.acknowledge = inner.acknowledge

    async def send_message(self, **kwargs: Any) -> str:
        if self.failures:
            self.failures -= 1
            raise MeshError("MESH send: no answer (ClientConnectorError)")
        return await self._inner.send_message(**kwargs)


async def test_when_the_ack_cannot_be_sent_the_next_poll_sends_the_same_ack(
    runtime: Runtime, clean: MeshSandbox, la_box: MeshClient, cpis_box: MeshClient
) -> None:
    """Applied but not acknowledged (MESH failed, or the replica died): the message stays
    in the inbox, and the next poll answers with the stored acknowledgement without
    applying anything again."""
    sent = await send_file(la_box, JSON_EXAMPLE, filename="upload-example.json")
    async with MeshClient(**clean.client_kwargs(CPIS), timeout=5) as client:
        mailbox = FailingSends(client, failures=1)

        uploads = MeshUploads(
            mailbox, PgMeshSenders(runtime.pool), db=runtime.db, clock=runtime.clock, index=None
        )

        assert await uploads.poll() == 0
        assert await cpis_box.list_inbox() == [sent]
        assert await la_box.list_inbox() == []
        assert await count(runtime, "plan_version") == 3

        assert await uploads.poll() == 1

    ack = await receive(la_box)
    assert body(ack) == await stored_ack(runtime, "XDM01", 42)
    assert await cpis_box.list_inbox() == []
    assert await count(runtime, "plan_version") == 3


async def test_two_replicas_polling_together_answer_a_file_once(
    runtime: Runtime, la_box: MeshClient, cpis_box: MeshClient
) -> None:
    """Two pollers built as serve builds them, on the same mailbox at the same time:
    the file is applied once and the LA gets one acknowledgement."""
    a = build_mesh_uploads(runtime)
    b = build_mesh_uploads(runtime)
    await send_file(la_box, JSON_EXAMPLE, filename="upload-example.json")
    done = await asyncio.gather(a.poll(), b.poll())

    assert sum(done) == 1
    assert len(await la_box.list_inbox()) == 1
    assert await cpis_box.list_inbox() == []
    assert await count(runtime, "plan_version") == 3


class HeldDatabase:
    """The runtime's database, each upload held at its first statement until both
    pollers have read the file and reached it."""

    def __init__(self, db: Any, both_read: asyncio.Barrier) -> None:
        self._db = db
        self._both_read = both_read

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        await self._both_read.wait()
        async with self._db.connection() as conn:
            yield conn


async def test_without_the_poll_lock_a_file_read_twice_is_still_applied_once(
    runtime: Runtime, clean: MeshSandbox, la_box: MeshClient
) -> None:
    """Even when two pollers both read the file and apply it at the same moment (no poll
    lock, both held until both have read it), the per-LA upload lock and the sequence
    rule apply it once; both answer with the same acknowledgement."""
    await send_file(la_box, JSON_EXAMPLE, filename="upload-example.json")
    db = HeldDatabase(runtime.db, asyncio.Barrier(2))

    async with (
        MeshClient(**clean.client_kwargs(CPIS), timeout=5) as one,
        MeshClient(**clean.client_kwargs(CPIS), timeout=5) as two,
    ):
        senders = PgMeshSenders(runtime.pool)
        done = await asyncio.gather(
            MeshUploads(one, senders, db=db, clock=runtime.clock, index=None).poll(),
            MeshUploads(two, senders, db=db, clock=runtime.clock, index=None).poll(),
        )

    assert done == [1, 1]
    # Applied once: a second application would have made three more plan versions.
    first, second = body(await receive(la_box)), body(await receive(la_box))
    assert first == second == await stored_ack(runtime, "XDM01", 42)
    assert await count(runtime, "plan_version") == 3


# --- `cpis worker`, as a process ------------------------------------------------------------------


async def _cpis(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *CPIS_COMMAND, *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_the_worker_command_takes_uploads_from_the_mesh_inbox(
    clean: MeshSandbox, tmp_path: Path, database_url: str, la_box: MeshClient
) -> None:
    """Set up as an operator would (`cpis la add`, `cpis la mesh`, CPIS_MESH_* in the
    environment), `cpis worker` applies the CSV example from the LA's mailbox, answers
    it, logs no personal data and stops cleanly on SIGTERM."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPIS_")} | {
        "CPIS_DATABASE_URL": database_url,
        "CPIS_DATA_DIR": str(tmp_path / "data"),
        "CPIS_PORT": "0",  # the worker's probes and /metrics, on any free port
        "CPIS_LOG_FORMAT": "json",
        "CPIS_MESH_URL": clean.base_url,
        "CPIS_MESH_MAILBOX": CPIS,
        "CPIS_MESH_PASSWORD": clean.passwords[CPIS],
        "CPIS_MESH_SHARED_KEY": clean.shared_key,
        "CPIS_MESH_POLL_SECONDS": "0.2",
    }
    await _cpis(env, "migrate")  # an operator's first step: the database and keys
    await _cpis(env, "la", "add", "--ods", DEMO.ods_code, "--name", DEMO.name,
                "--office-phone", DEMO.office_phone, "--edt-phone", DEMO.edt_phone)  # fmt: skip
    await _cpis(env, "la", "mesh", "--ods", DEMO.ods_code, "--mailbox", LA_BOX.lower())
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as out:
        worker = await asyncio.create_subprocess_exec(  # its probes on any free port
            *CPIS_COMMAND, "worker", env=env | {"CPIS_PORT": "0"}, stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            await send_file(la_box, CSV_EXAMPLE, filename="plans.csv", content_type="text/csv")
            doc = body(await receive(la_box))
        finally:
            worker.terminate()
            await asyncio.wait_for(worker.wait(), timeout=30)

    assert worker.returncode == 0, log_path.read_text()
    assert doc["file_code"] == "CPF03" and doc["la_ods"] == DEMO.ods_code
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM plan WHERE la_ods = 'XDM01'") == 3
    finally:
        await conn.close()
    logged = log_path.read_text()
    assert "mesh_uploads_started" in logged and "mesh_upload_acknowledged" in logged
    assert not any(p in logged for p in PERSONAL)


@pytest.mark.parametrize(
    ("raw", "seconds"), [(None, 60.0), ("", 60.0), ("0.25", 0.25), ("300", 300.0)]
)
def test_the_poll_interval_comes_from_cpis_mesh_poll_seconds(
    raw: str | None, seconds: float
) -> None:
    """CPIS_MESH_POLL_SECONDS sets how often the inbox is polled; unset means a minute."""
    env = {} if raw is None else {"CPIS_MESH_POLL_SECONDS": raw}
    assert Settings.from_env(env).mesh_poll_seconds == seconds


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "nan", "inf"])
def test_a_poll_interval_that_is_not_a_positive_number_is_refused(raw: str) -> None:
    """A zero, negative or non-numeric interval is a configuration error, named."""
    with pytest.raises(SettingsError, match="CPIS_MESH_POLL_SECONDS"):
        Settings.from_env({"CPIS_MESH_POLL_SECONDS": raw})
