"""A small client of the upstream simulator's control endpoints, for tests."""

from __future__ import annotations

from typing import Any

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=10)


class SimControl:
    """Change a running simulator's knobs and read what it saw."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.request(method, self.url + path, json=body) as resp,
        ):
            resp.raise_for_status()
            return await resp.json()

    async def control(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("POST", "/_control", changes)
        return result

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", "/_stats")
        return result

    async def reset(self) -> None:
        await self._json("POST", "/_reset")

    async def requests(self, path: str) -> list[tuple[float, Any]]:
        """``(arrival_s, status)`` of every request to ``path`` (oldest first)."""
        result = await self._json("GET", f"/_requests?path={path}")
        return [(float(t), status) for t, status in result["requests"]]

    async def count(self, path: str, status: str | None = None) -> int:
        by_status = (await self.stats())["by_endpoint"].get(path, {})
        if status is not None:
            return int(by_status.get(status, 0))
        return sum(int(n) for n in by_status.values())
