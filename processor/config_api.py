"""The ``api:`` section: where the validation API listens and how much one request may ask.

``processor serve`` runs the API alone; ``processor run`` serves it beside the stream consumer
when ``enabled`` is true, in the same process and on the same upstream callers (one rate
limit, breaker, cache and coalescing per upstream for both). The request guards' own settings
are the ``protection`` subsection (:mod:`processor.api.protection`).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from processor.api.protection import ApiProtection
from processor.config_base import Frozen, Problem, invalid


class ApiConfig(Frozen):
    """The validation API (``/v1/validate``, ``/v1/validate/batch``, ``/v1/records``)."""

    enabled: bool = Field(
        default=False, description="processor run: also serve the API (processor serve: always)"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8400, ge=0, le=65535, description="worker i listens on port + i")
    max_batch_items: int = Field(
        default=1_000, ge=1, le=100_000,
        description="events in one /v1/validate/batch or /v1/records request",
    )  # fmt: skip
    batch_concurrency: int = Field(
        default=64, ge=1, description="events of one batch validated at once"
    )
    batch_deadline_s: float = Field(
        default=20.0, gt=0,
        description="a batch answers by then; unfinished events get batch.deadline_exceeded",
    )  # fmt: skip
    request_timeout_s: float = Field(
        default=10.0, gt=0,
        description="one /v1/validate, and the broker's acknowledgement of /v1/records",
    )  # fmt: skip
    protection: ApiProtection = ApiProtection()

    @model_validator(mode="after")
    def _deadlines_inside_the_guard(self) -> ApiConfig:
        """A batch must answer before the guards' ``timeout_s`` cuts the request off (504 and
        every finished item lost), and so must one validation."""
        problems: list[Problem] = [
            ((name,), f"must be below protection.timeout_s ({value:g} >= "
                      f"{self.protection.timeout_s:g})")
            for name, value in (("batch_deadline_s", self.batch_deadline_s),
                                ("request_timeout_s", self.request_timeout_s))
            if value >= self.protection.timeout_s
        ]  # fmt: skip
        if problems:
            raise invalid("ApiConfig", problems)
        return self
