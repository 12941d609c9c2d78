"""An asyncio client for NHS MESH (Message Exchange for Social care and Health), API v2.

Notifications and upload acknowledgements reach local authorities as MESH
messages (SPEC §5). The outbox dispatcher is async, so this speaks the MESH
API over aiohttp rather than through NHS England's synchronous ``mesh-client``
library; the wire protocol is ``mesh-client``'s, and the integration tests use
that library against ``mesh-sandbox`` as an independent second implementation.

What the protocol looks like:

- Every request carries ``Authorization: NHSMESH mailbox:nonce:count:timestamp:hmac``,
  an HMAC-SHA256 (keyed with the environment's shared key) over
  ``mailbox:nonce:count:password:timestamp``; one nonce per client, the count
  going up with each request, the timestamp UTC ``YYYYMMDDHHMM``.
- ``Accept: application/vnd.mesh.v2+json`` selects the v2 JSON shapes.
- ``POST /messageexchange/{mailbox}`` is the handshake; ``POST .../outbox`` sends
  (``mex-To``, ``mex-WorkflowID``, ``mex-Subject``, ``mex-LocalID``, ``mex-FileName``,
  ``mex-Chunk-Range``); ``GET .../inbox`` lists; ``GET .../inbox/{id}[/{chunk}]``
  downloads; ``PUT .../inbox/{id}/status/acknowledged`` removes a message.

Chunking: MESH splits messages larger than a chunk (tens of MB) into chunks
fetched one by one (``mex-Chunk-Range: n:total``). Reading handles that.
Sending does not: our notifications and acknowledgements are a few kB, far
below any MESH chunk limit, so :meth:`MeshClient.send_message` refuses a body
over :data:`MAX_SEND_BYTES` instead of carrying code that would never run.

Errors: every failure is a :class:`~cpis.errors.MeshError` with the HTTP status (``None``
when no answer came) and whether retrying later may help, so the dispatcher
can choose between backing off and parking the notification. The client
never retries by itself: retries belong to the durable outbox.

Personal data: a message body carries an NHS number, and subjects, local ids
and file names come from the sender. None of them is logged or put into an
exception message; logs name mailboxes, workflow ids, message ids and
statuses only.
"""

from __future__ import annotations

import gzip
import hmac
import json
import platform
import ssl
import uuid
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog

from cpis.errors import MeshError
from cpis.model.uploads import MeshMessage

log = structlog.get_logger("cpis.mesh")

MESH_V2_JSON = "application/vnd.mesh.v2+json"

#: The largest body :meth:`MeshClient.send_message` sends, as one chunk. MESH over
#: the internet accepts chunks of up to 20 MB; ours are a few kB.
MAX_SEND_BYTES = 20 * 1024 * 1024

_CLIENT_VERSION = "cpis-mesh;1"


class AuthTokenGenerator:
    """Builds the ``NHSMESH`` Authorization header value, as ``mesh-client`` does.

    One random nonce per client and a count that goes up with each token, so no
    two requests carry the same token.
    """

    def __init__(self, *, mailbox_id: str, password: str, shared_key: bytes) -> None:
        self._mailbox_id = mailbox_id
        self._password = password
        self._shared_key = shared_key
        self._nonce = str(uuid.uuid4())
        self._count = 0

    def __repr__(self) -> str:
        return f"AuthTokenGenerator(mailbox_id={self._mailbox_id!r})"

    def token(self, now: datetime | None = None) -> str:
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M")
        public = f"{self._mailbox_id}:{self._nonce}:{self._count}"
        private = f"{public}:{self._password}:{stamp}"
        digest = hmac.new(self._shared_key, private.encode("utf-8"), sha256).hexdigest()
        self._count += 1
        return f"NHSMESH {public}:{stamp}:{digest}"


def _client_ssl(
    *,
    ssl_context: ssl.SSLContext | None,
    verify: bool,
    ca_file: str | None,
    client_cert: tuple[str, str] | None,
) -> ssl.SSLContext:
    """MESH is mutual TLS in every real environment: a client certificate issued for
    the mailbox, and a server certificate from the environment's NHS CA (``mesh-client``
    ships those bundles; point ``ca_file`` at one). A given ``ssl_context`` wins."""
    if ssl_context is not None:
        return ssl_context
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert is not None:
        ctx.load_cert_chain(*client_cert)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return str(value) if value else None


class MeshClient:
    """One MESH mailbox, spoken to over HTTP(S) with the MESH API v2.

    Open it with ``async with MeshClient(...) as mesh:`` (or call :meth:`close`):
    it keeps one connection pool, created on first use so that constructing a
    client never touches the network or needs a running loop.
    """

    def __init__(
        self,
        *,
        base_url: str,
        mailbox_id: str,
        password: str,
        shared_key: bytes | str,
        ssl_context: ssl.SSLContext | None = None,
        verify: bool = True,
        ca_file: str | None = None,
        client_cert: tuple[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        if isinstance(shared_key, str):
            shared_key = shared_key.encode("utf-8")
        self._base_url = base_url.rstrip("/")
        self._mailbox_id = mailbox_id
        self._auth = AuthTokenGenerator(
            mailbox_id=mailbox_id, password=password, shared_key=shared_key
        )
        self._ssl: ssl.SSLContext | None = None
        if self._base_url.lower().startswith("https://"):
            self._ssl = _client_ssl(
                ssl_context=ssl_context, verify=verify, ca_file=ca_file, client_cert=client_cert
            )
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"MeshClient(base_url={self._base_url!r}, mailbox_id={self._mailbox_id!r})"

    @property
    def mailbox_id(self) -> str:
        return self._mailbox_id

    async def __aenter__(self) -> MeshClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the API -------------------------------------------------------------

    async def handshake(self) -> None:
        """Check the mailbox and credentials; MESH asks clients to do this once a day."""
        headers = {
            "mex-ClientVersion": _CLIENT_VERSION,
            "mex-OSArchitecture": platform.machine() or "unknown",
            "mex-OSName": platform.system() or "unknown",
            "mex-OSVersion": platform.release() or "unknown",
            "mex-JavaVersion": "N/A",
        }
        await self._request("handshake", "POST", "", headers=headers)
        log.info("mesh_handshake_ok", mailbox=self._mailbox_id)

    async def send_message(
        self,
        *,
        recipient: str,
        workflow_id: str,
        body: bytes,
        subject: str | None = None,
        local_id: str | None = None,
        filename: str | None = None,
        content_type: str = "application/json",
    ) -> str:
        """Post ``body`` to ``recipient``'s inbox as one chunk; returns MESH's message id.

        A send is not idempotent: if it times out, MESH may still have taken it,
        and a retry may deliver twice. Give each notification a stable
        ``local_id`` so the recipient (and MESH tracking) can tell repeats apart.
        """
        if not body:
            raise ValueError("MESH refuses an empty message body")
        if len(body) > MAX_SEND_BYTES:
            raise ValueError(f"body over {MAX_SEND_BYTES} bytes would need chunking")
        headers = {
            "Content-Type": content_type,
            "mex-To": recipient,
            "mex-WorkflowID": workflow_id,
            "mex-Chunk-Range": "1:1",
        }
        if subject is not None:
            headers["mex-Subject"] = subject
        if local_id is not None:
            headers["mex-LocalID"] = local_id
        if filename is not None:
            headers["mex-FileName"] = filename
        _status, _headers, payload = await self._request(
            "send", "POST", "/outbox", headers=headers, data=body
        )
        message_id = _json_field(payload, "message_id", operation="send")
        log.info(
            "mesh_message_sent",
            mailbox=self._mailbox_id,
            recipient=recipient,
            workflow_id=workflow_id,
            message_id=message_id,
        )
        return message_id

    async def list_inbox(self) -> list[str]:
        """Ids of the messages waiting in our inbox, oldest first, following ``links.next``."""
        ids: list[str] = []
        path: str | None = "/inbox"
        absolute = False
        while path is not None:
            _status, _headers, payload = await self._request(
                "list_inbox", "GET", path, absolute_path=absolute
            )
            data = _json(payload, operation="list_inbox")
            messages = data.get("messages", [])
            if not isinstance(messages, list):
                raise MeshError(
                    "MESH list_inbox: unexpected response shape", mesh_status=200, retryable=False
                )
            ids.extend(str(m) for m in messages)
            links = data.get("links") or {}
            nxt = links.get("next") if isinstance(links, dict) else None
            # links.next is a path from the server root, query string included.
            path, absolute = (str(nxt), True) if nxt else (None, False)
        return ids

    async def read_message(self, message_id: str) -> MeshMessage:
        """Download a message, fetching every chunk and undoing gzip transfer encoding.

        Chunks are fetched raw and decompressed together: a sender may gzip
        the whole file and then split it (so a chunk is not a gzip stream of
        its own) or gzip each chunk; one pass over the joined bytes handles both.
        """
        status, headers, first = await self._download(message_id, 1)
        total = _total_chunks(headers, status)
        parts = [first]
        for chunk in range(2, total + 1):
            _s, chunk_headers, data = await self._download(message_id, chunk)
            if _encoding(chunk_headers) != _encoding(headers):
                raise MeshError(
                    "MESH read: chunks disagree on Content-Encoding",
                    mesh_status=_s,
                    retryable=False,
                )
            parts.append(data)
        body = b"".join(parts)
        encoding = _encoding(headers)
        if encoding not in ("", "identity", "gzip"):
            raise MeshError(
                "MESH read: unsupported Content-Encoding", mesh_status=status, retryable=False
            )
        if encoding == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError, zlib.error):
                raise MeshError(
                    "MESH read: gzip body could not be decompressed",
                    mesh_status=status,
                    retryable=False,
                ) from None
        log.info(
            "mesh_message_read",
            mailbox=self._mailbox_id,
            message_id=message_id,
            chunks=total,
            workflow_id=_header(headers, "mex-WorkflowID"),
        )
        return MeshMessage(
            id=_header(headers, "mex-MessageID") or message_id,
            sender=_header(headers, "mex-From"),
            workflow_id=_header(headers, "mex-WorkflowID"),
            subject=_header(headers, "mex-Subject"),
            local_id=_header(headers, "mex-LocalID"),
            filename=_header(headers, "mex-FileName"),
            body=body,
            message_type=_header(headers, "mex-MessageType") or "DATA",
            content_type=_header(headers, "mex-Content-Type") or _header(headers, "Content-Type"),
        )

    async def acknowledge(self, message_id: str) -> None:
        """Tell MESH we have the message; it leaves our inbox for good."""
        path = f"/inbox/{quote(message_id, safe='')}/status/acknowledged"
        await self._request("acknowledge", "PUT", path)
        log.info("mesh_message_acknowledged", mailbox=self._mailbox_id, message_id=message_id)

    # -- plumbing ------------------------------------------------------------

    async def _download(self, message_id: str, chunk: int) -> tuple[int, Mapping[str, str], bytes]:
        path = f"/inbox/{quote(message_id, safe='')}"
        if chunk > 1:
            path += f"/{chunk}"
        # gzip or nothing, so that only one decoding needs handling (see read_message).
        return await self._request(
            "read", "GET", path, headers={"Accept-Encoding": "gzip"}, ok=(200, 206)
        )

    def _session_for_use(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # auto_decompress off: chunked gzip bodies must be joined before they are
            # decompressed, which aiohttp's per-response decoding cannot do.
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                auto_decompress=False,
                headers={"Accept": MESH_V2_JSON, "User-Agent": _CLIENT_VERSION},
            )
        return self._session

    async def _request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        ok: tuple[int, ...] = (200, 202),
        absolute_path: bool = False,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One HTTP exchange; returns (status, headers, raw body) or raises :class:`MeshError`."""
        mailbox = quote(self._mailbox_id, safe="")
        url = (
            f"{self._base_url}{path}"
            if absolute_path
            else f"{self._base_url}/messageexchange/{mailbox}{path}"
        )
        all_headers = {"Accept-Encoding": "identity", **(headers or {})}
        all_headers["Authorization"] = self._auth.token()
        session = self._session_for_use()
        try:
            async with session.request(
                method,
                url,
                headers=all_headers,
                data=data,
                ssl=self._ssl if self._ssl is not None else True,
            ) as resp:
                payload = await resp.read()
                status = resp.status
                resp_headers = resp.headers
        except TimeoutError:
            log.warning("mesh_request_failed", operation=operation, reason="timeout")
            raise MeshError(
                f"MESH {operation}: timed out", mesh_status=None, retryable=True
            ) from None
        except aiohttp.ClientError as exc:
            # The exception's text is about the connection, never about the body.
            log.warning("mesh_request_failed", operation=operation, reason=type(exc).__name__)
            raise MeshError(
                f"MESH {operation}: no answer ({type(exc).__name__})",
                mesh_status=None,
                retryable=True,
            ) from None
        if status not in ok:
            code, description = _error_detail(payload)
            retryable = status >= 500 or status == 429
            log.warning(
                "mesh_request_failed",
                operation=operation,
                status=status,
                mesh_code=code,
                retryable=retryable,
            )
            reason = f"MESH {operation}: HTTP {status}" + (f" ({code})" if code else "")
            raise MeshError(
                reason,
                mesh_status=status,
                retryable=retryable,
                mesh_code=code,
                mesh_description=description,
            )
        return status, resp_headers, payload


def _json(payload: bytes, *, operation: str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except ValueError:
        raise MeshError(
            f"MESH {operation}: response is not JSON", mesh_status=200, retryable=False
        ) from None
    if not isinstance(data, dict):
        raise MeshError(
            f"MESH {operation}: unexpected response shape", mesh_status=200, retryable=False
        )
    return data


def _json_field(payload: bytes, field: str, *, operation: str) -> str:
    value = _json(payload, operation=operation).get(field)
    if not isinstance(value, str) or not value:
        raise MeshError(
            f"MESH {operation}: response lacks {field}", mesh_status=200, retryable=False
        )
    return value


def _error_detail(payload: bytes) -> tuple[str | None, str | None]:
    """MESH's error code and text from a v2 (``detail``) or v1 (``errorCode``) error body."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    detail = data.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        code = first.get("code")
        msg = first.get("msg")
        return (str(code) if code else None, str(msg) if msg else None)
    code = data.get("errorCode")
    msg = data.get("errorDescription")
    return (str(code) if code else None, str(msg) if msg else None)


def _encoding(headers: Mapping[str, str]) -> str:
    return str(headers.get("Content-Encoding") or "").strip().lower()


def _total_chunks(headers: Mapping[str, str], status: int) -> int:
    raw = str(headers.get("mex-Chunk-Range") or "1:1")
    try:
        _first, total = (int(part) for part in raw.split(":"))
    except ValueError:
        raise MeshError(
            "MESH read: malformed mex-Chunk-Range", mesh_status=status, retryable=False
        ) from None
    # A report (e.g. non-delivery) has no chunks at all and says "1:0".
    return max(total, 1)
