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
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from processor.checkplan import CheckConfig
from processor.errors import ConfigError
from processor.record_type_loading import record_types_and_problems
from processor.record_types import RecordType, RecordTypes
from processor.topic_settings import TopicRole, TopicSettings

#: A key path (as pydantic reports locations) and what is wrong there.
Problem = tuple[tuple[str | int, ...], str]


def _invalid(title: str, problems: Sequence[Problem]) -> ValidationError:
    """A validation error with one line per problem, each at its own key path.

    Raised from a validator, pydantic keeps the locations (prefixed with the enclosing
    sections), where a plain ``ValueError`` would be reported at the model's own location.
    """
    details = [
        InitErrorDetails(type=PydanticCustomError("config", message), loc=loc, input=None)
        for loc, message in problems
    ]
    return ValidationError.from_exception_data(title, details)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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


class _Secret(_Frozen):
    """Where a secret comes from: a file (its content, stripped) or an environment variable.
    Never inline in YAML, so a config file can be shown and committed without leaking."""

    file: Path | None = None
    env: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_inline(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError("secrets are not written inline: use {file: PATH} or {env: NAME}")
        return data

    @model_validator(mode="after")
    def _one_source(self) -> _Secret:
        if (self.file is None) == (self.env is None):
            raise _invalid("Secret", [((), "give exactly one of file or env")])
        return self

    def read(self) -> SecretStr:
        """The secret now (read at client start-up; raises ConfigError when missing)."""
        if self.file is not None:
            try:
                return SecretStr(self.file.read_text(encoding="utf-8").strip())
            except OSError as exc:
                raise ConfigError(f"cannot read secret file {self.file}: {exc.strerror}") from exc
        assert self.env is not None
        value = os.environ.get(self.env)
        if not value:
            raise ConfigError(f"environment variable {self.env} (a secret) is not set")
        return SecretStr(value)


class KafkaTls(_Frozen):
    """TLS towards the brokers (protocols SSL and SASL_SSL); mTLS with cert_file + key_file."""

    ca_file: Path | None = Field(default=None, description="PEM CA bundle; none: system CAs")
    cert_file: Path | None = Field(default=None, description="client certificate (mTLS)")
    key_file: Path | None = Field(default=None, description="client private key (mTLS)")
    key_password: _Secret | None = None
    check_hostname: bool = Field(default=True, description="false only for test clusters")

    @model_validator(mode="after")
    def _pair(self) -> KafkaTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise _invalid("KafkaTls", [((), "mTLS needs both cert_file and key_file")])
        if self.key_password is not None and self.key_file is None:
            raise _invalid("KafkaTls", [(("key_password",), "given without key_file")])
        return self


class OAuthClientCredentials(_Frozen):
    """An OAuth 2 client-credentials token endpoint (RFC 6749 section 4.4)."""

    token_url: AnyHttpUrl
    client_id: str
    client_secret: _Secret
    scope: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)
    refresh_margin_s: float = Field(default=60.0, ge=0, description="renew this long before expiry")


class KafkaSasl(_Frozen):
    """SASL (protocols SASL_PLAINTEXT and SASL_SSL). PLAIN and SCRAM take username and
    password; OAUTHBEARER takes token (a file re-read when it changes) or client_credentials."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
    username: str | None = None
    password: _Secret | None = None
    token_file: Path | None = None
    client_credentials: OAuthClientCredentials | None = None

    @model_validator(mode="after")
    def _credentials(self) -> KafkaSasl:
        if self.mechanism == "OAUTHBEARER":
            if (self.token_file is None) == (self.client_credentials is None):
                need = "OAUTHBEARER needs exactly one of token_file or client_credentials"
                raise _invalid("KafkaSasl", [((), need)])
            if self.username is not None or self.password is not None:
                raise _invalid("KafkaSasl", [((), "OAUTHBEARER takes no username/password")])
        elif self.username is None or self.password is None:
            raise _invalid("KafkaSasl", [((), f"{self.mechanism} needs username and password")])
        return self


class KafkaSecurity(_Frozen):
    """How the clients authenticate and encrypt (the standard Kafka client protocols)."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    tls: KafkaTls | None = None
    sasl: KafkaSasl | None = None

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        problems: list[Problem] = []
        uses_tls = self.protocol in ("SSL", "SASL_SSL")
        uses_sasl = self.protocol.startswith("SASL_")
        if uses_sasl and self.sasl is None:
            problems.append((("sasl",), f"protocol {self.protocol} needs sasl.mechanism"))
        if not uses_sasl and self.sasl is not None:
            problems.append((("sasl",), f"given but protocol {self.protocol} uses no SASL"))
        if not uses_tls and self.tls is not None:
            problems.append((("tls",), f"given but protocol {self.protocol} uses no TLS"))
        if problems:
            raise _invalid("KafkaSecurity", problems)
        return self


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


class AuthConfig(_Frozen):
    """Credentials for one upstream. The secret comes from ``token`` or ``token_file``."""

    kind: Literal["none", "bearer", "api_key"] = "none"
    token: SecretStr | None = None
    token_file: Path | None = None
    header_name: str = "X-Api-Key"

    @model_validator(mode="after")
    def _has_secret(self) -> AuthConfig:
        if self.kind != "none" and self.token is None and self.token_file is None:
            raise _invalid("AuthConfig", [((), f"kind {self.kind!r} needs token or token_file")])
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
