"""Configuration: one YAML file, every key overridable from the environment, frozen.

Precedence, highest first: ``PROCESSOR_<SECTION>__<KEY>`` environment variables (``__``
separates nesting levels), ``KAFKA_BOOTSTRAP_SERVERS``, the YAML file, the defaults here.
A bad value is a :class:`~processor.errors.ConfigError` naming the key, raised before
anything connects. Units are in the names (``_s``, ``_ms``, ``_bytes``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from processor.errors import ConfigError
from schemas import RECORD_TYPES


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicsConfig(_Frozen):
    """Topic names: one input, three outcome topics."""

    input: str = "records.in"
    valid: str = "records.valid"
    invalid: str = "records.invalid"
    dead_letter: str = "records.dlq"


class OutcomesConfig(_Frozen):
    """What the valid and invalid topics carry (see :mod:`processor.payloads`)."""

    valid_payload: Literal["document", "record"] = Field(
        default="document",
        description="document: the outcome document; record: the record as a CloudEvent",
    )
    invalid_payload: Literal["document", "record"] = "document"


class KafkaConfig(_Frozen):
    """How to reach Kafka and behave in the consumer group."""

    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "record-processor"
    group_instance_id: str | None = Field(
        default=None,
        description=(
            "Static membership: a restarted instance with the same id gets its partitions "
            "back without a rebalance. With --workers N each worker appends -<index>. Trade-off: "
            "a static member that stops is not replaced until session_timeout_ms passes."
        ),
    )
    client_id: str = "record-processor"
    topics: TopicsConfig = TopicsConfig()
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: int = Field(default=45_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    max_poll_interval_ms: int = Field(default=300_000, ge=1_000)
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    producer_linger_ms: int = Field(default=5, ge=0)
    producer_max_batch_bytes: int = Field(default=262_144, ge=1_024)
    producer_max_request_bytes: int = Field(default=1_048_576, ge=1_024)
    compression: Literal["none", "gzip", "lz4", "zstd"] = "none"
    flush_timeout_s: float = Field(default=30.0, gt=0)


class EngineConfig(_Frozen):
    """Ordering, in-flight bounds, commits and shutdown."""

    ordering: Literal["key", "partition", "unordered"] = "key"
    max_concurrency: int = Field(default=256, ge=1, description="records processed at once")
    max_in_flight: int = Field(default=5_000, ge=1, description="records taken, not yet acked")
    max_in_flight_per_partition: int = Field(default=2_000, ge=1)
    fetch_max_records: int = Field(default=500, ge=1)
    poll_timeout_ms: int = Field(default=100, ge=1)
    commit_interval_s: float = Field(default=1.0, gt=0)
    drain_timeout_s: float = Field(default=30.0, gt=0)
    max_record_bytes: int = Field(default=262_144, ge=64)
    stall_timeout_s: float = Field(
        default=60.0, gt=0, description="work pending and no record finished this long: stalled"
    )
    max_rss_mib: int | None = Field(
        default=None, ge=64, description="pause intake while resident memory is above this"
    )

    @model_validator(mode="after")
    def _caps_fit(self) -> EngineConfig:
        if self.max_in_flight_per_partition > self.max_in_flight:
            raise ValueError("max_in_flight_per_partition must not exceed max_in_flight")
        return self


class ValidationConfig(_Frozen):
    """Schema validation policy."""

    unknown_fields: Literal["reject", "keep"] = "reject"


class AuthConfig(_Frozen):
    """Credentials for one upstream. The secret comes from ``token`` or ``token_file``."""

    kind: Literal["none", "bearer", "api_key"] = "none"
    token: SecretStr | None = None
    token_file: Path | None = None
    header_name: str = "X-Api-Key"

    @model_validator(mode="after")
    def _has_secret(self) -> AuthConfig:
        if self.kind != "none" and self.token is None and self.token_file is None:
            raise ValueError(f"auth kind {self.kind!r} needs token or token_file")
        return self

    def secret(self) -> str | None:
        """The credential, read from ``token_file`` if given (at start-up, once)."""
        if self.kind == "none":
            return None
        if self.token is not None:
            return self.token.get_secret_value()
        assert self.token_file is not None
        return self.token_file.read_text().strip()


class RetryConfig(_Frozen):
    """Retries of transient failures (timeouts, connection errors, 5xx, 429).

    Backoff is exponential with full jitter: attempt n waits uniform(0, min(backoff_max_s,
    backoff_initial_s * 2**(n-1))), or the upstream's Retry-After when it is longer. The
    budget counts time spent calling and backing off, not time waiting for an open breaker:
    a record is dead-lettered only if it failed while the upstream was answering.
    """

    max_attempts: int = Field(default=8, ge=1)
    budget_s: float = Field(default=30.0, gt=0)
    backoff_initial_s: float = Field(default=0.05, gt=0)
    backoff_max_s: float = Field(default=2.0, gt=0)


class BreakerConfig(_Frozen):
    """The circuit breaker: trips on a failure rate or a run of failures, then probes.

    Failures are timeouts, connection errors and 5xx (not 429, not other 4xx). Open, it
    makes callers wait (their partitions are paused) for ``open_s``; then ``half_open_probes``
    calls go through, and all must succeed to close it.
    """

    enabled: bool = True
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    window_s: float = Field(default=10.0, gt=0)
    min_calls: int = Field(default=20, ge=1)
    consecutive_failures: int = Field(default=10, ge=1)
    open_s: float = Field(default=2.0, gt=0)
    half_open_probes: int = Field(default=1, ge=1)


class CacheConfig(_Frozen):
    """Answers kept by request (method, path, body): duplicates and hot keys are free."""

    ttl_s: float = Field(default=300.0, ge=0, description="0 turns the cache off")
    max_entries: int = Field(default=100_000, ge=1)


class UpstreamConfig(_Frozen):
    """One upstream HTTP API: where it is, how hard we may push it, how long we wait."""

    base_url: AnyHttpUrl
    max_concurrency: int = Field(default=64, ge=1)
    rate_limit_rps: float | None = Field(default=None, gt=0, description="None: no limit")
    rate_limit_burst: int = Field(default=1, ge=1)
    connect_timeout_s: float = Field(default=2.0, gt=0)
    read_timeout_s: float = Field(default=5.0, gt=0)
    total_timeout_s: float = Field(default=10.0, gt=0)
    auth: AuthConfig = AuthConfig()
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    cache: CacheConfig = CacheConfig()


class CheckConfig(_Frozen):
    """A declarative HTTP check: a request built from record fields, a rule on the answer.

    ``body`` maps request keys to record field names (``{"email": "email"}``). The check
    passes when the response's ``pass_field`` equals ``pass_equals``; any other 2xx answer is
    a clear "no" (``upstream.rejected``), explained by ``reason_field`` when present.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    upstream: str
    method: Literal["GET", "POST"] = "POST"
    path: str = Field(pattern=r"^/")
    body: dict[str, str]
    pass_field: str
    pass_equals: bool | int | str = True
    reason_field: str | None = None
    when_present: str | None = Field(default=None, description="run only if this field is set")
    required: bool = True


class HttpConfig(_Frozen):
    """The operations endpoint: /healthz, /readyz, /metrics, /status (and /docs)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9400, ge=0, le=65535, description="worker i listens on port + i")
    broker_check_interval_s: float = Field(default=2.0, gt=0)
    broker_check_timeout_s: float = Field(default=2.0, gt=0)


class LoggingConfig(_Frozen):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Settings(BaseSettings):
    """The whole configuration of one processor instance."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix="PROCESSOR_",
        env_nested_delimiter="__",
        nested_model_default_partial_update=True,
    )

    name: str = "record-processor"
    instance_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    kafka: KafkaConfig = KafkaConfig()
    engine: EngineConfig = EngineConfig()
    validation: ValidationConfig = ValidationConfig()
    outcomes: OutcomesConfig = OutcomesConfig()
    upstreams: dict[str, UpstreamConfig] = Field(default_factory=dict)
    checks: dict[str, list[CheckConfig]] = Field(
        default_factory=dict, description="record type -> its checks"
    )
    logging: LoggingConfig = LoggingConfig()
    http: HttpConfig = HttpConfig()

    @model_validator(mode="after")
    def _checks_refer_to_known_things(self) -> Settings:
        for record_type, checks in self.checks.items():
            if record_type not in RECORD_TYPES:
                raise ValueError(f"checks.{record_type}: unknown record type")
            names = [c.name for c in checks]
            if len(names) != len(set(names)):
                raise ValueError(f"checks.{record_type}: check names must be unique")
            fields = RECORD_TYPES[record_type].model_fields
            for check in checks:
                if check.upstream not in self.upstreams:
                    raise ValueError(
                        f"checks.{record_type}.{check.name}.upstream: "
                        f"no upstream named {check.upstream!r}"
                    )
                for used in [*check.body.values(), check.when_present]:
                    if used is not None and used not in fields:
                        raise ValueError(
                            f"checks.{record_type}.{check.name}: "
                            f"{record_type} has no field {used!r}"
                        )
        return self


class _MappingSource(PydanticBaseSettingsSource):
    """A settings source over a plain mapping (the YAML file, KAFKA_BOOTSTRAP_SERVERS)."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return loaded


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{key}: {err['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(path: Path | None) -> Settings:
    """Read, merge and validate the configuration.

    Args:
        path: The YAML file, or None for defaults plus environment.

    Raises:
        ConfigError: With every offending key named.
    """
    file_data = _read_yaml(path) if path is not None else {}
    kafka_env: dict[str, Any] = {}
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        kafka_env = {"kafka": {"bootstrap_servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"]}}

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                env_settings,
                _MappingSource(settings_cls, kafka_env),
                _MappingSource(settings_cls, file_data),
            )

    try:
        return _Loaded()
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
