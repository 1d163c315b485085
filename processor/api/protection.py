"""Request guards of the validation API (stub: the protection work replaces the body).

:func:`protect` installs every guard on an application; :class:`ApiProtection` is its config
section (``api.protection``), every field defaulted so ``ApiProtection()`` is valid.
"""

from __future__ import annotations

from fastapi import FastAPI

from processor.config_base import Frozen


class ApiProtection(Frozen):
    """Body limit, API keys, request signing, rate limits, idempotency, timeouts."""


def protect(app: FastAPI, settings: ApiProtection) -> None:
    """Install the guards on ``app`` (the stub installs none)."""
