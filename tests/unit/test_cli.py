"""Tests of the command line: help and version, exit codes, check-config's YAML, keys of produce."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from processor import __version__, cli
from processor.cli import main
from processor.cli_produce import key_for
from processor.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "config" / "processor.example.yaml"
SECRET = "s3cret-token"

pytestmark = pytest.mark.usefixtures("clean_environment", "restore_logging")


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _exit_code(argv: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return exited.value.code


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the installed version and exits 0."""
    assert _exit_code(["--version"]) == 0
    assert capsys.readouterr().out == f"processor {__version__}\n"


@pytest.mark.parametrize(
    "command", [[], ["run"], ["serve"], ["check-config"], ["topics"], ["produce"]]
)
def test_help_is_plain_text_with_the_exit_codes(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every --help exits 0, shows no documentation markup and lists the exit codes."""
    assert _exit_code([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert not re.search(r"``|:class:|:mod:|:func:", out)
    assert "exit codes:" in out
    assert "\n  2    bad configuration or usage" in out


def test_a_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command is a usage error: exit 2 with argparse's usage line."""
    assert _exit_code(["launch"]) == 2
    assert "invalid choice: 'launch'" in capsys.readouterr().err


def test_every_exit_code_is_documented_in_the_module_and_the_readme() -> None:
    """Each exit code the CLI returns has a line in the cli docstring and a README row."""
    readme = (ROOT / "README.md").read_text()
    doc = cli.__doc__ or ""
    codes = [cli.EXIT_OK, cli.EXIT_FAILURE, cli.EXIT_CONFIG, cli.EXIT_INTERRUPTED]
    for code in codes:
        assert re.search(rf"^    {code} +\S", doc, re.MULTILINE), code
        assert f"\n| {code} | " in readme, code


def test_run_without_config_refuses_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """`run` with neither --config nor --no-config says so on stderr and exits 2."""
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("processor: run needs --config FILE")
    assert "--no-config" in err


def test_run_takes_either_config_or_no_config(capsys: pytest.CaptureFixture[str]) -> None:
    """--config and --no-config together are a usage error."""
    assert _exit_code(["run", "--no-config", "--config", str(EXAMPLE)]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_bad_workers_exits_2_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid --workers value is a configuration error naming the option."""
    assert main(["run", "--config", str(EXAMPLE), "--workers", "none"]) == 2
    assert "--workers: expected a positive number" in capsys.readouterr().err


def test_check_config_exits_2_and_names_every_bad_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config on a bad file exits 2 and prints each offending key on stderr."""
    bad = _write(
        tmp_path,
        {"engine": {"max_concurrency": 0}, "checks": {"order.v9": []}, "logging": {"level": 1}},
    )
    assert main(["check-config", "--config", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0] == f"processor: invalid configuration ({bad}), 3 problems:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "engine.max_concurrency",
        "logging.level",
        "checks.order.v9",
    ]


def test_check_config_prints_the_effective_config_as_yaml_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config on a good file exits 0 and prints YAML with every secret masked and no
    PID-derived instance id."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["upstreams"]["email"]["auth"] = {"kind": "bearer", "token": SECRET}
    good = _write(tmp_path, data)
    assert main(["check-config", "--config", str(good)]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    printed = yaml.safe_load(out)
    assert printed["upstreams"]["email"]["auth"] == {
        "kind": "bearer", "token": "**********", "token_file": None, "header_name": "X-Api-Key",
    }  # fmt: skip
    assert printed["engine"]["max_concurrency"] == 256
    assert printed["checks"]["customer.v1"][0]["name"] == "email_deliverable"
    assert "instance_id" not in printed
    assert load_settings(good).upstreams["email"].auth.secret() == SECRET


def test_check_config_prints_an_instance_id_the_user_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An instance id set in the environment is part of the effective config printed."""
    monkeypatch.setenv("PROCESSOR_INSTANCE_ID", "eu-west-7")
    assert main(["check-config", "--config", str(EXAMPLE)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["instance_id"] == "eu-west-7"


@pytest.mark.parametrize(
    ("field", "line", "key"),
    [
        (None, b'{"id": "a-1"}', None),
        ("id", b'{"id": "a-1"}', b"a-1"),
        ("$.id", b'{"id": "a-1"}', b"a-1"),
        ("data.customer_id", b'{"data": {"customer_id": "c-9"}}', b"c-9"),
        ("data.n", b'{"data": {"n": 7}}', b"7"),
        ("id", b'{"type": "customer.v1"}', None),
        ("id", b'{"id": null}', None),
        ("data.n", b'{"data": [1]}', None),
        ("id", b"not json {", None),
        ("id", b'["id"]', None),
    ],
)
def test_produce_keys_come_from_the_named_field_when_the_line_has_it(
    field: str | None, line: bytes, key: bytes | None
) -> None:
    """--key-field takes the key from a (dotted) field of a JSON line, else no key."""
    assert key_for(field)(line) == key


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--topic-config", "retention.ms"],
            "--topic-config: expected KEY=VALUE, got 'retention.ms'",
        ),
        (["--partitions", "0"], "--partitions: must be at least 1, got 0"),
        (["--replication-factor", "-1"], "--replication-factor: must be at least 1, got -1"),
    ],
)
def test_topics_create_refuses_bad_flags_with_exit_2_before_connecting(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad topics-create flag is one line naming it, exit 2, and no broker is asked."""
    assert main(["topics", "create", "--config", str(EXAMPLE), *flags]) == 2
    assert capsys.readouterr().err == f"processor: {message}\n"


def test_topic_settings_give_each_topic_its_overrides_and_the_shared_values() -> None:
    """A per-topic override wins for that topic only; configs merge, values as strings."""
    settings = load_settings(None).kafka.topic_settings.model_validate({
        "partitions": 6, "configs": {"retention.ms": 1000, "cleanup.policy": "delete"},
        "per_topic": {"dead_letter": {"partitions": 1, "configs": {"retention.ms": "9"}}},
    })  # fmt: skip
    assert settings.spec("input") == (6, 1, {"retention.ms": "1000", "cleanup.policy": "delete"})
    assert settings.spec("dead_letter") == (1, 1, {"retention.ms": "9", "cleanup.policy": "delete"})
