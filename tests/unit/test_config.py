"""Tests of configuration loading: YAML, environment overrides, every error naming its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from processor.checkplan import CheckConfig
from processor.config import Settings, load_settings, reference_problems
from processor.errors import ConfigError
from processor.record_types import PydanticRecordType

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "config" / "processor.example.yaml"


pytestmark = pytest.mark.usefixtures("clean_environment")


def _write(tmp_path: Path, data: Any, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _example() -> dict[str, Any]:
    loaded = yaml.safe_load(EXAMPLE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_example_config_loads() -> None:
    """The annotated example in deploy/config loads and its values reach the settings."""
    settings = load_settings(EXAMPLE)
    assert settings.kafka.topics.dead_letter == "records.dlq"
    assert settings.engine.max_concurrency == 256
    assert set(settings.upstreams) == {"email", "vat", "sanctions"}
    assert [c.name for c in settings.checks["customer.v1"]] == [
        "email_deliverable",
        "vat_registered",
        "sanctions_company",
    ]


def test_no_file_gives_the_defaults() -> None:
    """Without a file the settings are the documented defaults."""
    settings = load_settings(None)
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.engine.ordering == "key"
    assert settings.checks == {}
    assert settings.delivery == "at_least_once"


def test_exactly_once_transactional_ids_name_the_input_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each input partition's transactional id is <prefix>-<topic>-<partition>, the prefix
    the group id unless configured; delivery takes only its two modes."""
    monkeypatch.setenv("PROCESSOR_DELIVERY", "exactly_once")
    monkeypatch.setenv("PROCESSOR_KAFKA__GROUP_ID", "validators")
    settings = load_settings(None)
    assert settings.delivery == "exactly_once"
    assert settings.kafka.transactional_id("records.in", 3) == "validators-records.in-3"
    monkeypatch.setenv("PROCESSOR_KAFKA__TRANSACTIONAL_ID_PREFIX", "eu")
    assert load_settings(None).kafka.transactional_id("records.in", 3) == "eu-records.in-3"
    monkeypatch.setenv("PROCESSOR_DELIVERY", "exactly_twice")
    with pytest.raises(ConfigError, match="delivery"):
        load_settings(None)


def test_a_processor_env_variable_overrides_the_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """PROCESSOR_ENGINE__MAX_CONCURRENCY replaces the file's value and leaves its siblings."""
    monkeypatch.setenv("PROCESSOR_ENGINE__MAX_CONCURRENCY", "7")
    settings = load_settings(EXAMPLE)
    assert settings.engine.max_concurrency == 7
    assert settings.engine.max_in_flight == 5000


def test_kafka_bootstrap_servers_overrides_the_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """KAFKA_BOOTSTRAP_SERVERS replaces kafka.bootstrap_servers from the file."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-a:9092")
    settings = load_settings(EXAMPLE)
    assert settings.kafka.bootstrap_servers == "broker-a:9092"
    assert settings.kafka.group_id == "record-processor"


def test_the_processor_kafka_variable_wins_over_kafka_bootstrap_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PROCESSOR_KAFKA__BOOTSTRAP_SERVERS takes precedence over KAFKA_BOOTSTRAP_SERVERS."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-a:9092")
    monkeypatch.setenv("PROCESSOR_KAFKA__BOOTSTRAP_SERVERS", "broker-b:9092")
    settings = load_settings(EXAMPLE)
    assert settings.kafka.bootstrap_servers == "broker-b:9092"


@pytest.mark.parametrize(
    ("section", "change", "key"),
    [
        ("engine", {"max_concurrency": 0}, "engine.max_concurrency"),
        ("engine", {"ordering": "random"}, "engine.ordering"),
        ("engine", {"max_in_flight": 10}, "max_in_flight_per_partition"),
        ("kafka", {"auto_offset_reset": "middle"}, "kafka.auto_offset_reset"),
        ("kafka", {"topics": {"input": ["a"]}}, "kafka.topics.input"),
        ("kafka", {"partitions": 3}, "kafka.partitions"),
        ("upstreams", {"email": {"base_url": "not a url"}}, "upstreams.email.base_url"),
        ("upstreams", {"email": {"base_url": "http://h", "auth": {"kind": "bearer"}}}, "auth"),
        ("validation", {"unknown_fields": "ignore"}, "validation.unknown_fields"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_its_key(
    tmp_path: Path, section: str, change: dict[str, Any], key: str
) -> None:
    """An invalid value raises ConfigError whose message names the offending key path."""
    data = _example()
    data[section] = {**data[section], **change}
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, data))
    assert key in str(caught.value)


def test_a_bad_environment_value_is_a_config_error_naming_its_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad value from the environment is reported under the key it overrides."""
    monkeypatch.setenv("PROCESSOR_ENGINE__MAX_CONCURRENCY", "many")
    with pytest.raises(ConfigError, match=r"engine\.max_concurrency"):
        load_settings(EXAMPLE)


def test_a_check_referring_to_an_unknown_upstream_names_it(tmp_path: Path) -> None:
    """A check whose upstream is not configured is rejected, naming check and upstream."""
    data = _example()
    data["checks"]["customer.v1"][0]["upstream"] = "nowhere"
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, data))
    assert "\n  checks.customer.v1[0].upstream: no upstream named 'nowhere'" in str(caught.value)


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        (
            {"order.v9": []},
            "checks.order.v9: unknown record type 'order.v9' (known: customer.v1, transfer.v1)",
        ),
        (
            {
                "customer.v1": [
                    {"name": "a", "upstream": "email", "path": "/x", "body": {"e": "shoe_size"},
                     "pass_field": "ok"},
                ]
            },
            "checks.customer.v1[0].body.e: customer.v1 has no field 'shoe_size'",
        ),
    ],
)  # fmt: skip
def test_checks_must_refer_to_known_record_types_and_fields(
    tmp_path: Path, checks: dict[str, Any], expected: str
) -> None:
    """Checks for unknown record types or naming unknown fields are rejected by name."""
    data = {
        "record_types": {k: v for k, v in _example()["record_types"].items()},
        "upstreams": {"email": {"base_url": "http://127.0.0.1:1"}},
        "checks": checks,
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, data))
    assert expected in str(caught.value)


def test_an_unknown_top_level_key_is_rejected(tmp_path: Path) -> None:
    """A misspelt top-level section is an error naming it, not silently ignored."""
    data = {**_example(), "engin": {"max_concurrency": 3}}
    with pytest.raises(ConfigError, match="engin: Extra inputs are not permitted"):
        load_settings(_write(tmp_path, data))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "must hold a mapping"),
        ("just a string\n", "must hold a mapping"),
        ("engine: {max_concurrency: [\n", r"config\.yaml, line 2, column 1: not valid YAML"),
    ],
)
def test_a_file_that_is_not_a_yaml_mapping_is_a_config_error(
    tmp_path: Path, text: str, message: str
) -> None:
    """A YAML list, scalar or syntax error is reported as a ConfigError."""
    with pytest.raises(ConfigError, match=message):
        load_settings(_write(tmp_path, text))


def test_every_problem_is_reported_at_once_each_line_starting_with_its_key(
    tmp_path: Path,
) -> None:
    """Field errors and cross-field problems come in one error, one line per key path."""
    data = _example()
    data["engine"]["max_concurrency"] = 0
    data["upstreams"]["vat"]["base_url"] = "not a url"
    data["upstreams"]["email"]["auth"] = {"kind": "bearer"}
    data["checks"]["customer.v1"][0]["upstream"] = "nowhere"
    data["checks"]["customer.v1"][2]["name"] = "email_deliverable"
    data["checks"]["order.v9"] = []
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, data))
    header, *lines = str(caught.value).splitlines()
    assert header.endswith("6 problems:")
    assert sorted(line.strip().split(": ", 1)[0] for line in lines) == [
        "checks.customer.v1[0].upstream",
        "checks.customer.v1[2].name",
        "checks.order.v9",
        "engine.max_concurrency",
        "upstreams.email.auth",
        "upstreams.vat.base_url",
    ]
    assert "Value error" not in str(caught.value)


def test_cross_field_problems_are_all_reported_when_the_fields_are_valid(tmp_path: Path) -> None:
    """With every field valid, all reference problems still come in one error."""
    data = _example()
    data["checks"]["customer.v1"][0]["upstream"] = "nowhere"
    data["checks"]["customer.v1"][1]["when_present"] = "shoe_size"
    data["engine"]["max_in_flight"] = 10
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, data))
    message = str(caught.value)
    assert "checks.customer.v1[0].upstream: no upstream named 'nowhere'" in message
    assert "checks.customer.v1[1].when_present: customer.v1 has no field 'shoe_size'" in message
    assert "engine.max_in_flight_per_partition: must not exceed max_in_flight" in message


def test_reference_problems_take_the_record_type_table_as_input() -> None:
    """The cross-field rules judge record types against the table they are given."""

    class Order(pydantic.BaseModel):
        amount: int

    check = CheckConfig(
        name="big", upstream="risk", path="/x", body={"a": "amount"}, pass_field="ok"
    )
    order = PydanticRecordType("order.v1", Order)
    assert reference_problems({"order.v1": [check]}, {"risk"}, {"order.v1": order}) == []
    assert reference_problems({"order.v1": [check]}, {"risk"}, {}) == [
        (("checks", "order.v1"), "unknown record type 'order.v1' (known: none)")
    ]


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    """An empty YAML file is an empty mapping, so the defaults apply."""
    settings = load_settings(_write(tmp_path, ""))
    assert settings.engine.max_concurrency == 256


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist is a ConfigError naming the file."""
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"cannot read config file .*nope\.yaml"):
        load_settings(missing)


@pytest.mark.parametrize(
    ("target", "field", "value"),
    [("settings", "name", "other"), ("engine", "max_concurrency", 1), ("kafka", "group_id", "g")],
)
def test_the_settings_are_frozen(target: str, field: str, value: object) -> None:
    """Neither the settings nor their sections can be changed after loading."""
    settings = load_settings(EXAMPLE)
    obj: pydantic.BaseModel = settings if target == "settings" else getattr(settings, target)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        setattr(obj, field, value)
    assert getattr(obj, field) != value


def test_the_settings_type_forbids_extra_fields() -> None:
    """Settings declares frozen, extra-forbidding configuration."""
    assert Settings.model_config.get("frozen") is True
    assert Settings.model_config.get("extra") == "forbid"


def test_api_deadlines_must_end_before_the_guards_request_timeout(tmp_path: Path) -> None:
    """A batch deadline or validation timeout at or past api.protection.timeout_s is a config
    error naming each key (the guard would cut the request off first, losing the batch)."""
    path = _write(tmp_path, {"api": {"batch_deadline_s": 30, "request_timeout_s": 45,
                                     "protection": {"timeout_s": 30}}})  # fmt: skip
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    message = str(raised.value)
    assert "api.batch_deadline_s: must be below protection.timeout_s (30 >= 30)" in message
    assert "api.request_timeout_s: must be below protection.timeout_s (45 >= 30)" in message
