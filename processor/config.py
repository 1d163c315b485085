"""Configuration: one YAML file, every key overridable from the environment, frozen.

Precedence, highest first: ``PROCESSOR_<SECTION>__<KEY>`` environment variables (``__``
separates nesting levels), ``KAFKA_BOOTSTRAP_SERVERS``, the YAML file, the defaults here.
A bad configuration is a :class:`~processor.errors.ConfigError` raised before anything
connects, listing every problem at once, one line each, starting with the key path
(``engine.max_concurrency``, ``checks.customer.v1[0].upstream``). Cross-field rules (checks
refer to configured upstreams, known record types and their fields) live in one function,
:func:`reference_problems`, that takes the table of known record types as input. Units are in
the names (``_s``, ``_ms``, ``_bytes``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from processor.checkplan import CheckConfig
from processor.config_api import ApiConfig
from processor.config_base import Frozen as _Frozen
from processor.config_base import Problem
from processor.config_base import invalid as _invalid
from processor.config_security import KafkaSasl, KafkaSecurity, KafkaTls, OAuthClientCredentials
from processor.config_upstream import (
    AuthConfig,
    BreakerConfig,
    CacheConfig,
    RetryConfig,
    UpstreamConfig,
)
from processor.errors import ConfigError
from processor.record_type_loading import record_types_and_problems
from processor.record_types import RecordType, RecordTypes
from processor.topic_settings import TopicRole, TopicSettings

__all__ = [
    "ApiConfig",
    "AuthConfig",
    "BreakerConfig",
    "CacheConfig",
    "KafkaSasl",
    "KafkaSecurity",
    "KafkaTls",
    "OAuthClientCredentials",
    "Problem",
    "RetryConfig",
    "UpstreamConfig",
]  # the sections that moved out keep their import path: processor.config


class TopicsConfig(_Frozen):
    """Topic names: one input, three outcome topics."""

    input: str = "records.in"
    valid: str = "records.valid"
    invalid: str = "records.invalid"
    dead_letter: str = "records.dlq"

    def names(self) -> list[str]:
        """Input first, then the three outcome topics."""
        return [self.input, self.valid, self.invalid, self.dead_letter]

    def by_role(self) -> dict[TopicRole, str]:
        """Each topic's name by its role (input first)."""
        return {"input": self.input, "valid": self.valid, "invalid": self.invalid,
                "dead_letter": self.dead_letter}  # fmt: skip


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
    topic_settings: TopicSettings = TopicSettings()
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: int = Field(default=45_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    max_poll_interval_ms: int = Field(default=300_000, ge=1_000)
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    connect_timeout_s: float = Field(
        default=10.0, gt=0,
        description="start-up: each client's bootstrap (first metadata answer) within this",
    )  # fmt: skip
    producer_linger_ms: int = Field(default=5, ge=0)
    producer_max_batch_bytes: int = Field(default=262_144, ge=1_024)
    producer_max_request_bytes: int = Field(default=1_048_576, ge=1_024)
    compression: Literal["none", "gzip", "lz4", "zstd"] = "none"
    flush_timeout_s: float = Field(default=30.0, gt=0)
    security: KafkaSecurity = KafkaSecurity()
    transactional_id_prefix: str | None = Field(
        default=None,
        description=(
            "delivery: exactly_once: each input partition's producer has the transactional id "
            "<prefix>-<topic>-<partition> (default prefix: group_id)"
        ),
    )

    def transactional_id(self, topic: str, partition: int) -> str:
        """The transactional id of the producer that owns ``topic``/``partition``'s outcomes."""
        return f"{self.transactional_id_prefix or self.group_id}-{topic}-{partition}"


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
            raise _invalid(
                "EngineConfig",
                [(("max_in_flight_per_partition",), f"must not exceed max_in_flight "
                  f"({self.max_in_flight_per_partition} > {self.max_in_flight})")],
            )  # fmt: skip
        return self


class ValidationConfig(_Frozen):
    """Schema validation policy."""

    unknown_fields: Literal["reject", "keep"] = "reject"


class EndpointConfig(_Frozen):
    """The operations endpoint (/healthz, /readyz, /metrics, /status, /docs) and the broker
    probe behind its readiness and lag answers."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9400, ge=0, le=65535, description="worker i listens on port + i")
    broker_check_interval_s: float = Field(default=2.0, gt=0)
    broker_check_timeout_s: float = Field(default=2.0, gt=0)


class GuardConfig(_Frozen):
    """The dead-letter guard (``processor.guard``): pause intake when the dead-letter share of
    recent outcomes says a deploy or an upstream is broken, instead of dead-lettering all."""

    enabled: bool = False
    max_dead_letter_ratio: float = Field(default=0.5, gt=0, lt=1)
    window_s: float = Field(default=60.0, gt=0, description="the sliding window of outcomes")
    min_outcomes: int = Field(default=100, ge=1, description="in the window, before it may trip")
    resume: Literal["manual", "auto"] = Field(
        default="manual", description="manual: POST /guard/resume or SIGUSR2; auto: cooldown_s"
    )
    cooldown_s: float = Field(default=300.0, gt=0)


class TracingConfig(_Frozen):
    """OpenTelemetry tracing (the ``[otel]`` extra); the exporter is configured by the
    standard ``OTEL_*`` environment (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``...)."""

    enabled: bool = False


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
    record_types: dict[str, str | dict[str, str]] = Field(
        default_factory=dict,
        description=(
            "CloudEvent type -> pydantic model import path (package.module:Class), or "
            "{model: ...} or {json_schema: file} (relative to the config file)"
        ),
    )
    discover_record_types: bool = Field(
        default=True,
        description="also load the types installed packages register (entry points)",
    )
    instance_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    delivery: Literal["at_least_once", "exactly_once"] = Field(
        default="at_least_once",
        description=(
            "exactly_once: outcomes and the input offsets they cover are committed in one "
            "Kafka transaction per input partition (read them with isolation_level "
            "read_committed)"
        ),
    )
    kafka: KafkaConfig = KafkaConfig()
    engine: EngineConfig = EngineConfig()
    validation: ValidationConfig = ValidationConfig()
    outcomes: OutcomesConfig = OutcomesConfig()
    upstreams: dict[str, UpstreamConfig] = Field(default_factory=dict)
    checks: dict[str, list[CheckConfig]] = Field(
        default_factory=dict, description="record type -> its checks"
    )
    dead_letter_guard: GuardConfig = GuardConfig()
    tracing: TracingConfig = TracingConfig()
    logging: LoggingConfig = LoggingConfig()
    endpoint: EndpointConfig = EndpointConfig()
    api: ApiConfig = ApiConfig()
    _types: RecordTypes = PrivateAttr(default_factory=RecordTypes)

    @property
    def types(self) -> RecordTypes:
        """The loaded record types: configured ones and installed packages' entry points."""
        return self._types

    @model_validator(mode="wrap")
    @classmethod
    def _checks_refer_to_known_things(
        cls, data: Any, handler: ValidatorFunctionWrapHandler
    ) -> Settings:
        """Every field error and every cross-field problem, reported together."""
        try:
            settings: Settings = handler(data)
        except ValidationError as exc:
            problems = _reference_problems_of_raw(data)
            if not problems:
                raise
            field_problems: list[Problem] = [(e["loc"], e["msg"]) for e in exc.errors()]
            raise _invalid(cls.__name__, field_problems + problems) from None
        types, type_problems = record_types_and_problems(
            settings.record_types, base_dir=Path.cwd(), discover=settings.discover_record_types
        )
        problems = [*type_problems]
        problems += reference_problems(
            settings.checks,
            settings.upstreams.keys(),
            types,
            unloaded={where[1] for where, _ in type_problems if where[0] == "record_types"},
        )
        if problems:
            raise _invalid(cls.__name__, problems)
        settings._types = types
        return settings


def reference_problems(
    checks: Mapping[str, Sequence[CheckConfig]],
    upstreams: Collection[str],
    record_types: Mapping[str, RecordType],
    unloaded: Collection[str] = (),
) -> list[Problem]:
    """Every check that names an unknown record type, upstream or record field.

    Args:
        checks: Record type -> its checks, as configured.
        upstreams: The names of the configured upstreams.
        record_types: The known record types.
        unloaded: Configured types that failed to load (reported already, not again).
    """
    problems: list[Problem] = []
    for record_type, type_checks in checks.items():
        rtype = record_types.get(record_type)
        if rtype is None and record_type not in unloaded:
            known = ", ".join(sorted(record_types)) or "none"
            problems.append(
                (("checks", record_type), f"unknown record type {record_type!r} (known: {known})")
            )
        schema = rtype.json_schema() if rtype is not None else None
        seen: set[str] = set()
        for index, check in enumerate(type_checks):
            at = ("checks", record_type, index)
            if check.name in seen:
                problems.append(((*at, "name"), f"check names must be unique: {check.name!r}"))
            seen.add(check.name)
            if check.upstream not in upstreams:
                configured = ", ".join(sorted(upstreams)) or "none"
                problems.append(((*at, "upstream"), f"no upstream named {check.upstream!r} "
                                 f"(configured: {configured})"))  # fmt: skip
            for problem in check.schema_problems(schema) if schema is not None else ():
                where, _, rest = problem.partition(": ")  # "body.e: shoe_size: no field ..."
                what = rest.partition(": ")[2] or rest
                if what.startswith("no field"):
                    what = f"{record_type} has {what}"
                problems.append(((*at, *where.split(".")), what))
    return problems


_CHECKS = TypeAdapter(dict[str, list[CheckConfig]])


def _reference_problems_of_raw(data: Any) -> list[Problem]:
    """The cross-field problems of input that failed field validation, where the checks
    themselves are valid (so a run reports both kinds at once)."""
    if not isinstance(data, Mapping):
        return []
    try:
        checks = _CHECKS.validate_python(data.get("checks") or {})
    except ValidationError:
        return []
    upstreams = data.get("upstreams") or {}
    if not isinstance(upstreams, Mapping):
        return []
    spec = data.get("record_types") or {}
    if not isinstance(spec, Mapping):
        return []
    discover = data.get("discover_record_types", True) is not False
    types, type_problems = record_types_and_problems(spec, base_dir=Path.cwd(), discover=discover)
    unloaded = {where[1] for where, _ in type_problems if where[0] == "record_types"}
    return [*type_problems, *reference_problems(checks, upstreams.keys(), types, unloaded)]


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
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"config file {path}{where}: not valid YAML: {exc.problem or exc.context}"
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return loaded


def key_path(loc: Sequence[str | int]) -> str:
    """``("checks", "customer.v1", 0, "upstream")`` -> ``checks.customer.v1[0].upstream``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path or "(top level)"


def _describe(exc: ValidationError, path: Path | None) -> str:
    lines = [
        f"{key_path(err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
        for err in exc.errors()
    ]
    source = f" ({path})" if path is not None else ""
    count = f"{len(lines)} problem{'s' if len(lines) != 1 else ''}"
    return f"invalid configuration{source}, {count}:\n  " + "\n  ".join(lines)


def _schema_paths_from(base: Path, data: dict[str, Any]) -> dict[str, Any]:
    """``record_types.*.json_schema`` paths in a file are relative to that file."""
    spec = data.get("record_types")
    if not isinstance(spec, dict):
        return data
    resolved: dict[str, Any] = {}
    for name, value in spec.items():
        if isinstance(value, dict) and isinstance(value.get("json_schema"), str):
            value = {**value, "json_schema": str(base / value["json_schema"])}
        resolved[name] = value
    return {**data, "record_types": resolved}


def load_settings(path: Path | None) -> Settings:
    """Read, merge and validate the configuration.

    Args:
        path: The YAML file, or None for defaults plus environment.

    Raises:
        ConfigError: With every offending key named.
    """
    file_data = _read_yaml(path) if path is not None else {}
    if path is not None:
        file_data = _schema_paths_from(path.parent, file_data)
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
        raise ConfigError(_describe(exc, path)) from exc
