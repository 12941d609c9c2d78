"""The third way in for an upload file: an LA's MESH mailbox (issue 4, "done means").

``cpis serve`` with a MESH mailbox of its own, over real HTTP on a real PostgreSQL,
and NHS England's mesh-sandbox: the JSON example sent from the LA's mailbox comes
back acknowledged in that mailbox, and an ED then finds the child's plan in a
FHIR lookup.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from cpis.adapters.mesh import MeshClient
from cpis.app import Start, build, create_app
from cpis.model import LocalAuthority
from cpis.settings import Secret
from cpis.web.server import serving
from cpis.workers.mesh_uploads import ACK_WORKFLOW, UPLOAD_WORKFLOW
from tests.e2e.conftest import E2E, ClientKey, e2e_settings, register_world
from tests.mesh_sandbox import MeshSandbox, running_mesh_sandbox
from tests.polling import wait_until
from tests.ports import listening_socket, port_of

CPIS = "X26ABC1"
LA_BOX = "X26ABC2"
EXAMPLE = (
    Path(__file__).resolve().parents[2] / "schemas/examples/upload-example.json"
).read_bytes()
DEMO = LocalAuthority("XDM01", "Demoshire County Council", "01632 960000", "01632 960999", 24)


@pytest.fixture(scope="module")
async def sandbox() -> AsyncIterator[MeshSandbox]:
    async with running_mesh_sandbox(auth_mode="full") as box:
        yield box


@pytest.fixture
async def e2e_mesh(
    sandbox: MeshSandbox, tmp_path: Path, database_url: str, client_keys: dict[str, ClientKey]
) -> AsyncIterator[E2E]:
    """As the ``e2e`` fixture, with CP-IS's own MESH mailbox configured and Demoshire's
    case management system sending from LA_BOX."""
    await sandbox.reset()
    sock = listening_socket()
    settings = dataclasses.replace(
        e2e_settings(tmp_path, database_url, port_of(sock)),
        mesh_url=sandbox.base_url,
        mesh_mailbox=CPIS,
        mesh_password=Secret(sandbox.passwords[CPIS]),
        mesh_shared_key=Secret(sandbox.shared_key),
        mesh_poll_seconds=0.1,
    )
    async with build(settings, start=Start.SERVE) as runtime:
        await register_world(runtime, client_keys)
        await runtime.db.upsert_la(DEMO)
        await runtime.db.set_la_mesh(DEMO.ods_code, LA_BOX, "CPIS_NOTIFICATION")
        async with serving(create_app(runtime), settings, sock=sock):
            db = await asyncpg.connect(database_url)
            try:
                async with aiohttp.ClientSession() as http:
                    yield E2E(runtime, settings, http, db, client_keys)
            finally:
                await db.close()


async def test_an_upload_sent_by_mesh_is_acknowledged_and_found_by_an_ed(
    e2e_mesh: E2E, sandbox: MeshSandbox
) -> None:
    """The JSON example through MESH: CPF03 with a code per record in the LA's mailbox,
    the CPP plan it carried is what an ED's CareTeam search finds, and /metrics counts
    the file by its code."""
    async with MeshClient(**sandbox.client_kwargs(LA_BOX), timeout=5) as la_box:
        sent = await la_box.send_message(
            recipient=CPIS,
            workflow_id=UPLOAD_WORKFLOW,
            body=EXAMPLE,
            filename="upload-example.json",
        )
        inbox: list[str] = []

        async def acknowledged() -> bool:
            inbox[:] = await la_box.list_inbox()
            return bool(inbox)

        await wait_until(acknowledged, what="the acknowledgement in the LA's mailbox")
        ack = await la_box.read_message(inbox[0])
        await la_box.acknowledge(inbox[0])

    assert ack.workflow_id == ACK_WORKFLOW and ack.local_id == sent
    doc = json.loads(ack.body)
    assert doc["file_code"] == "CPF03"
    assert [r["code"] for r in doc["records"]] == ["CPR06", "CPR06", "CPR06", "CPR07"]

    found = await e2e_mesh.search("CareTeam", "9990000018")
    assert found.status == 200, found.text
    bundle = found.fhir()
    assert bundle["total"] == 1
    assert DEMO.name in json.dumps(bundle)
    metrics = await e2e_mesh.request("GET", "/metrics")
    assert 'cpis_mesh_upload_files_total{file_code="CPF03"} 1.0' in metrics.text
