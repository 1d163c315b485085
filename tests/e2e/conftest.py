"""Fixtures of the end-to-end tests: the CLI processes a test starts, reaped when it ends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.cli_process import CliProcesses, cli_processes


@pytest.fixture
async def cli() -> AsyncIterator[CliProcesses]:
    """Starts ``processor run`` subprocesses; kills and reaps any still running at the end."""
    async with cli_processes() as procs:
        yield procs
