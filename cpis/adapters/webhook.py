"""Sending to LAs' rest-hook endpoints over HTTP (issue 3).

Any 2xx is success. Connection errors, timeouts, 408, 429 and 5xx are worth
retrying; other 4xx mean the endpoint rejects what we send, and retrying the
same bytes will not help (the delivery goes dead and the LA is shown why).
Error reasons name the status or the kind of failure, never the body.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from cpis.workers.dispatcher import DeliveryFailed

_RETRYABLE_4XX = {408, 425, 429}


class WebhookSender:
    def __init__(self, *, user_agent: str = "cpis") -> None:
        self._session: aiohttp.ClientSession | None = None
        self._user_agent = user_agent

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": self._user_agent})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(
        self, url: str, body: bytes, *, headers: Mapping[str, str], timeout_s: float
    ) -> None:
        try:
            async with self._http().post(
                url,
                data=body,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
            ) as resp:
                await resp.read()
                status = resp.status
        except TimeoutError:
            raise DeliveryFailed("endpoint timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryFailed(f"endpoint unreachable ({type(exc).__name__})") from None
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in _RETRYABLE_4XX
        raise DeliveryFailed(f"endpoint answered {status}", retryable=retryable)
