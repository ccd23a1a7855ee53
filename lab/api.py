"""The server HTTP API of a node (``POST /api/<method>`` on its internal port), over aiohttp.

One shared session for the lab's publisher and scenarios. A call answers the
``result`` object, or raises :class:`ApiError`: with the server's error code
for an error reply, or code 0 when the node could not be reached or did not
answer in time (the publication may or may not have been made then).
"""

from __future__ import annotations

from typing import Any

import aiohttp

__all__ = ["ApiError", "ServerApi"]


class ApiError(Exception):
    """A failed API call: ``code`` is the server's error code, 0 when it never answered."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code
        self.message = message


class ServerApi:
    def __init__(self, api_key: str, *, timeout: float = 2.0) -> None:
        self._key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def call(self, internal_url: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """``method`` on the node at ``internal_url`` (``http://host:port``); its result."""
        url = f"{internal_url}/api/{method}"
        try:
            async with self._client().post(
                url, json=body, headers={"X-API-Key": self._key}
            ) as response:
                if response.status != 200 and response.content_type != "application/json":
                    raise ApiError(0, f"HTTP {response.status}: {(await response.text())[:200]}")
                reply = await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(0, f"{type(exc).__name__}: {exc}") from None
        error = reply.get("error")
        if error:
            raise ApiError(int(error.get("code", 0)) or -1, str(error.get("message", "")))
        result: dict[str, Any] = reply.get("result") or {}
        return result

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
