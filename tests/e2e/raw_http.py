"""HTTP/1.1 over a bare socket, for what no HTTP client will send: half a header, a
body that stops, bytes that are not HTTP. Every read has a deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from multidict import CIMultiDict


@dataclass
class RawReply:
    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Raw:
    """One client connection, driven byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, *, limit: float = 10.0) -> RawReply:
        """The next response: status line, headers, and a Content-Length body."""
        async with asyncio.timeout(limit):
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers: CIMultiDict[str] = CIMultiDict()
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers.add(name.strip(), value.strip())
            body = await self.reader.readexactly(int(headers.get("Content-Length", "0")))
        return RawReply(status, headers, body)

    async def closed_within(self, limit: float) -> float:
        """Seconds until the server closes the connection (reading and dropping anything
        it sends first); fails if it is still open after ``limit``."""
        started = time.monotonic()
        async with asyncio.timeout(limit):
            try:
                while await self.reader.read(65536):
                    pass
            except ConnectionResetError:
                pass
        return time.monotonic() - started


@asynccontextmanager
async def connect(base: str) -> AsyncIterator[Raw]:
    """A connection to the server ``base`` (a URL) names."""
    parts = urlsplit(base)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        yield Raw(reader, writer)
    finally:
        writer.close()
        with suppress(ConnectionResetError, BrokenPipeError):
            await writer.wait_closed()


def request_head(method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
