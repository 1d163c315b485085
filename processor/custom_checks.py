"""Custom Python checks: loading them by import path, and the upstream handle they call.

:func:`load_custom_checks` imports every ``custom:`` check of a configuration at start-up
(before anything connects), so a path that does not import, or names something that is
not an async callable, is a :class:`~processor.errors.ConfigError` naming the key.
:class:`UpstreamHandle` is the :class:`processor.sdk.Upstream` a check receives: it turns
``get``/``post`` into :class:`~processor.upstream.UpstreamRequest` s on the upstream's
:class:`~processor.upstream.Caller` (the resilient one in the service), counting calls,
attempts and latency for the check's result. The public side is :mod:`processor.sdk`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from processor.errors import ConfigError
from processor.fieldpaths import query_text
from processor.sdk import CustomCheck, QueryValue, Response
from processor.upstream import Caller, UpstreamRequest

if TYPE_CHECKING:
    from processor.checkplan import CheckConfig

MAX_CALLS_PER_RECORD = 1_000


def load_custom_check(import_path: str, key: str) -> CustomCheck:
    """Import ``package.module:function`` and make sure it is an async callable.

    Raises:
        ConfigError: Naming ``key``, when it does not import or is not an async callable.
    """
    module_name, _, attr = import_path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{key}: {import_path!r} is not of the form package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # user code may fail to import in any way: all are config errors
        raise ConfigError(
            f"{key}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    target = getattr(module, attr, None)
    if target is None:
        raise ConfigError(f"{key}: module {module_name!r} has no attribute {attr!r}")
    call = target if inspect.isfunction(target) else getattr(target, "__call__", None)  # noqa: B004
    if not inspect.iscoroutinefunction(call):
        raise ConfigError(
            f"{key}: {import_path} is not an async callable (async def check(record, upstream))"
        )
    checked: CustomCheck = target
    return checked


def load_custom_checks(checks: Mapping[str, Sequence[CheckConfig]]) -> dict[str, CustomCheck]:
    """Load every custom check of ``checks`` (record type -> its checks), by import path.

    Raises:
        ConfigError: ``checks.<type>.<index>.custom: ...`` for the first that fails.
    """
    loaded: dict[str, CustomCheck] = {}
    for record_type, configs in checks.items():
        for index, cfg in enumerate(configs):
            if cfg.custom is not None and cfg.custom not in loaded:
                key = f"checks.{record_type}.{index}.custom ({cfg.name})"
                loaded[cfg.custom] = load_custom_check(cfg.custom, key)
    return loaded


class UpstreamHandle:
    """One record's view of one upstream, for one custom check run."""

    def __init__(self, caller: Caller, key_prefix: str) -> None:
        self.name = caller.name
        self._caller = caller
        self._key_prefix = key_prefix
        self.calls = 0
        self.attempts = 0
        self.latency_ms = 0.0
        self.last_status: int | None = None

    async def get(self, path: str, params: Mapping[str, QueryValue] | None = None) -> Response:
        """GET ``path`` with query ``params`` and no body, through the upstream's stack."""
        query: list[tuple[str, str]] = []
        for name, value in (params or {}).items():
            values = value if isinstance(value, list | tuple) else [value]
            query += [(name, query_text(v)) for v in values if v is not None]
        return await self._call("GET", path, tuple(query), None)

    async def post(self, path: str, json: Any = None) -> Response:
        """POST ``json`` (None: ``{}``) to ``path``, through the upstream's stack."""
        return await self._call("POST", path, (), {} if json is None else json)

    async def _call(
        self, method: str, path: str, query: tuple[tuple[str, str], ...], body: Any
    ) -> Response:
        if not path.startswith("/"):
            raise ValueError(f"upstream {self.name}: path must start with '/', not {path!r}")
        if self.calls >= MAX_CALLS_PER_RECORD:
            raise RuntimeError(f"upstream {self.name}: more than {MAX_CALLS_PER_RECORD} calls")
        request = UpstreamRequest(
            method=method,
            path=path,
            json_body=body,
            idempotency_key=f"{self._key_prefix}:{self.calls}",
            query=query,
        )
        self.calls += 1
        answer = await self._caller.call(request)
        self.attempts += answer.attempts
        self.latency_ms += answer.latency_ms
        self.last_status = answer.status
        return Response(status=answer.status, body=answer.body)
