"""The MESH adapter against NHS England's real ``mesh-sandbox`` (SPEC §5).

One sandbox per module, in full-auth mode, so wrong credentials are really
refused. The official synchronous ``mesh_client`` library is run in a thread as
an independent second implementation of the protocol, to check that what we
send is what it reads and what it sends (chunked, gzipped) is what we read.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator

import pytest
from mesh_client import MeshClient as OfficialMeshClient
from structlog.testing import capture_logs

from cpis.adapters.mesh import MAX_SEND_BYTES, MeshClient
from cpis.errors import MeshError
from tests.mesh_sandbox import MeshSandbox, running_mesh_sandbox
from tests.ports import free_port

A = "X26ABC1"  # stands for CP-IS
B = "X26ABC2"  # stands for a local authority
WORKFLOW = "CPIS_NOTIFICATION"
NHS_NUMBER = "9434765919"


@pytest.fixture
async def sender(clean: MeshSandbox) -> AsyncIterator[MeshClient]:
    async with MeshClient(**clean.client_kwargs(A), timeout=5) as client:
        yield client


@pytest.fixture
async def receiver(clean: MeshSandbox) -> AsyncIterator[MeshClient]:
    async with MeshClient(**clean.client_kwargs(B), timeout=5) as client:
        yield client


def official(sandbox: MeshSandbox, mailbox: str) -> OfficialMeshClient:
    return OfficialMeshClient(
        sandbox.base_url,
        mailbox,
        sandbox.passwords[mailbox],
        shared_key=sandbox.shared_key.encode(),
        max_retries=0,
        timeout=5,
    )


def notification_body() -> bytes:
    # Non-ASCII on purpose: the body must come back byte for byte.
    doc = {"nhs_number": NHS_NUMBER, "event": "attendance", "site": "Hôpital Ŵ"}
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


async def test_handshake_succeeds_with_the_mailbox_credentials(sender: MeshClient) -> None:
    """A correct mailbox, password and shared key pass the MESH handshake."""
    await sender.handshake()


async def test_sent_message_reads_back_identically_from_the_recipient_inbox(
    sender: MeshClient, receiver: MeshClient
) -> None:
    """What A sends to B arrives in B's inbox with the same bytes and metadata, and A's
    name as sender; no log line carries the NHS number in the body."""
    body = notification_body()
    with capture_logs() as logs:
        message_id = await sender.send_message(
            recipient=B,
            workflow_id=WORKFLOW,
            body=body,
            subject="CP-IS notification",
            local_id="evt-0001",
            filename="evt-0001.json",
        )
        assert message_id in await receiver.list_inbox()
        message = await receiver.read_message(message_id)

    assert message.id == message_id
    assert message.body == body
    assert message.sender == A
    assert message.workflow_id == WORKFLOW
    assert message.subject == "CP-IS notification"
    assert message.local_id == "evt-0001"
    assert message.filename == "evt-0001.json"
    assert message.message_type == "DATA"
    assert message.content_type == "application/json"
    assert {e["event"] for e in logs} >= {"mesh_message_sent", "mesh_message_read"}
    assert NHS_NUMBER not in repr(logs)
    assert NHS_NUMBER not in repr(message)


async def test_acknowledged_message_leaves_the_inbox(
    sender: MeshClient, receiver: MeshClient
) -> None:
    """Acknowledging a message removes it from the recipient's inbox and leaves others."""
    first = await sender.send_message(recipient=B, workflow_id=WORKFLOW, body=b'{"n": 1}')
    second = await sender.send_message(recipient=B, workflow_id=WORKFLOW, body=b'{"n": 2}')
    assert set(await receiver.list_inbox()) == {first, second}

    await receiver.acknowledge(first)

    assert await receiver.list_inbox() == [second]


async def test_wrong_password_is_refused_and_not_retryable(clean: MeshSandbox) -> None:
    """A bad password is a 403 that retrying will not fix."""
    kwargs = clean.client_kwargs(A) | {"password": "not-the-password"}
    async with MeshClient(**kwargs, timeout=5) as client:
        with pytest.raises(MeshError) as caught:
            await client.handshake()
    assert caught.value.mesh_status == 403
    assert caught.value.retryable is False


async def test_wrong_shared_key_is_refused_and_not_retryable(clean: MeshSandbox) -> None:
    """The HMAC is keyed with the environment's shared key: the wrong key is a 403."""
    kwargs = clean.client_kwargs(A) | {"shared_key": b"some-other-key"}
    async with MeshClient(**kwargs, timeout=5) as client:
        with pytest.raises(MeshError) as caught:
            await client.list_inbox()
    assert caught.value.mesh_status == 403
    assert caught.value.retryable is False


async def test_unknown_recipient_is_not_retryable_and_error_holds_no_body(
    sender: MeshClient,
) -> None:
    """Sending to a mailbox MESH does not know fails for good (417), and the error's text
    names neither the body nor the subject."""
    with pytest.raises(MeshError) as caught:
        await sender.send_message(
            recipient="NOSUCHBOX",
            workflow_id=WORKFLOW,
            body=notification_body(),
            subject=f"about {NHS_NUMBER}",
        )
    assert caught.value.mesh_status == 417
    assert caught.value.retryable is False
    assert NHS_NUMBER not in str(caught.value)


async def test_unknown_message_is_not_retryable(receiver: MeshClient) -> None:
    """Reading a message id MESH never issued is a 404 that retrying will not fix."""
    with pytest.raises(MeshError) as caught:
        await receiver.read_message("NO_SUCH_MESSAGE")
    assert caught.value.mesh_status == 404
    assert caught.value.retryable is False


async def test_sandbox_down_is_retryable(sandbox: MeshSandbox) -> None:
    """Nothing listening (connection refused) is a retryable error with no status."""
    kwargs = sandbox.client_kwargs(A) | {"base_url": f"http://127.0.0.1:{free_port()}"}
    async with MeshClient(**kwargs, timeout=5) as client:
        with pytest.raises(MeshError) as caught:
            await client.handshake()
    assert caught.value.mesh_status is None
    assert caught.value.retryable is True


async def test_server_that_never_answers_times_out_retryably(sandbox: MeshSandbox) -> None:
    """A server that accepts the connection but never answers ends in a retryable timeout
    within the client's configured timeout."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    kwargs = sandbox.client_kwargs(A) | {"base_url": f"http://127.0.0.1:{port}"}
    try:
        async with MeshClient(**kwargs, timeout=0.3) as client:
            started = time.monotonic()
            with pytest.raises(MeshError) as caught:
                await client.list_inbox()
            assert time.monotonic() - started < 3
    finally:
        server.close()
        await server.wait_closed()
    assert caught.value.mesh_status is None
    assert caught.value.retryable is True


async def test_official_mesh_client_reads_what_we_sent(
    clean: MeshSandbox, sender: MeshClient
) -> None:
    """NHS England's own client finds our message in B's inbox with our bytes and headers,
    and can acknowledge it: we speak its protocol."""
    body = notification_body()
    message_id = await sender.send_message(
        recipient=B, workflow_id=WORKFLOW, body=body, subject="s", local_id="evt-42"
    )

    def read_with_official_client() -> tuple[list[str], bytes, str, str, str, str, list[str]]:
        with official(clean, B) as mesh:
            ids = mesh.list_messages()
            msg = mesh.retrieve_message(message_id)
            try:
                data = msg.read()
            finally:
                msg.close()
            facts = (msg.sender, msg.workflow_id, msg.local_id, msg.subject)
            msg.acknowledge()
            return ids, data, *facts, mesh.list_messages()

    ids, data, sent_by, workflow, local_id, subject, after = await asyncio.to_thread(
        read_with_official_client
    )
    assert message_id in ids
    assert data == body
    assert (sent_by, workflow, local_id, subject) == (A, WORKFLOW, "evt-42", "s")
    assert message_id not in after


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
async def test_chunked_message_from_official_client_is_read_whole(
    clean: MeshSandbox, receiver: MeshClient, compress: bool
) -> None:
    """A message the official client sends in several chunks (gzipped per chunk or not)
    is read by us as one body, chunks joined in order."""
    body = b"".join(b"line %05d of an LA upload acknowledgement\n" % i for i in range(400))

    def send_with_official_client() -> str:
        with official(clean, A) as mesh:
            message_id: str = mesh.send_message(
                B,
                body,
                max_chunk_size=4096,
                compress=compress,
                workflow_id="CPIS_UPLOAD",
                filename="upload.csv",
            )
            return message_id

    message_id = await asyncio.to_thread(send_with_official_client)
    with capture_logs() as logs:
        message = await receiver.read_message(message_id)

    chunks = [e["chunks"] for e in logs if e["event"] == "mesh_message_read"]
    assert chunks == [(len(body) + 4095) // 4096]  # really several chunks
    assert message.body == body
    assert message.workflow_id == "CPIS_UPLOAD"
    assert message.filename == "upload.csv"
    assert message.sender == A


async def test_gzip_on_the_wire_is_undone(sender: MeshClient, receiver: MeshClient) -> None:
    """MESH may gzip a download we allowed to be gzipped (the sandbox always does);
    the body we hand on is the sender's bytes, never the compressed ones."""
    body = notification_body() * 50
    message_id = await sender.send_message(recipient=B, workflow_id=WORKFLOW, body=body)
    message = await receiver.read_message(message_id)
    assert message.body == body
    assert message.body != gzip.compress(body)


async def test_sends_that_would_need_chunking_are_refused_before_any_request() -> None:
    """Our messages are small; a body over the single-chunk limit is a programming error,
    raised before any connection is made."""
    async with MeshClient(
        base_url=f"http://127.0.0.1:{free_port()}", mailbox_id=A, password="p", shared_key="k"
    ) as client:
        with pytest.raises(ValueError):
            await client.send_message(
                recipient=B, workflow_id=WORKFLOW, body=b"x" * (MAX_SEND_BYTES + 1)
            )


async def test_sandbox_can_host_mailboxes_of_our_choosing() -> None:
    """The helper can give the sandbox extra mailboxes (e.g. an LA's configured id),
    which handshake and receive like the canned ones."""
    async with running_mesh_sandbox(mailboxes=["LA00101"]) as box:
        cpis = MeshClient(**box.client_kwargs(A), timeout=5)
        la = MeshClient(**box.client_kwargs("LA00101"), timeout=5)
        async with cpis, la:
            await la.handshake()
            message_id = await cpis.send_message(
                recipient="LA00101", workflow_id=WORKFLOW, body=b"{}"
            )
            assert await la.list_inbox() == [message_id]
