"""A real Prometheus server for tests: started on a free 127.0.0.1 port, queried over its API."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from devtools.stack import free_port

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
TIMEOUT = aiohttp.ClientTimeout(total=10)


class PromQLError(Exception):
    """Prometheus answered a query with an error."""


class PrometheusApi:
    """The HTTP API of one Prometheus server."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self._session = session

    async def _get(self, path: str, **params: str) -> Any:
        async with self._session.get(self.url + path, params=params) as resp:
            body = await resp.json()
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now; PromQLError on an error answer."""
        data = await self._get("/api/v1/query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    async def scalar(self, expr: str) -> float | None:
        """The value of a single-series ``expr``; None when it has no series."""
        result = await self.query(expr)
        return float(result[0]["value"][1]) if result else None

    async def wait_for(self, expr: str, ok: Callable[[float], bool], timeout_s: float) -> None:
        """Poll ``expr`` until its value satisfies ``ok``; TimeoutError after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (value := await self.scalar(expr)) is None or not ok(value):
            if loop.time() >= deadline:
                raise TimeoutError(f"{expr} was {value} after {timeout_s}s")
            await asyncio.sleep(0.2)  # the poll interval of a bounded wait

    async def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule with its ``health`` (ok, err, unknown) and ``lastError``."""
        data = await self._get("/api/v1/rules")
        return [rule for group in data["groups"] for rule in group["rules"]]

    async def metric_names(self) -> set[str]:
        """The name of every series Prometheus holds."""
        return set(await self._get("/api/v1/label/__name__/values"))

    async def ready(self) -> bool:
        try:
            async with self._session.get(f"{self.url}/-/ready") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def running_prometheus(config: Path, data_dir: Path) -> AsyncIterator[PrometheusApi]:
    """Run ``prometheus`` with ``config`` until it is ready; stop it on exit.

    A missing binary is an error (``make prometheus`` installs it), never a skip.
    """
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not on PATH: run `make prometheus` (deploy/prometheus/install.sh)"
    port = free_port()
    log = (data_dir / "prometheus.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        stdout=log,
        stderr=log,
    )
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            api = PrometheusApi(f"http://127.0.0.1:{port}", session)
            async with asyncio.timeout(STARTUP_TIMEOUT_S):
                while not await api.ready():
                    if proc.returncode is not None:
                        raise RuntimeError(
                            f"prometheus exited with {proc.returncode}: "
                            + (data_dir / "prometheus.log").read_text()
                        )
                    await asyncio.sleep(0.1)  # the poll interval of a bounded wait
            yield api
    finally:
        await _stop(proc)
        log.close()
