"""The CLI with a team's own record types: config errors name the key (exit 2), and
``schemas diff`` gates a record type's schema change like the project's own snapshots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from processor.cli import main

pytestmark = pytest.mark.usefixtures("clean_environment", "restore_logging")

ORDER = "acme_orders.models:OrderV1"  # examples/orders is on the test path (pyproject)


def _config(tmp_path: Path, record_types: dict[str, Any], **extra: Any) -> Path:
    path = tmp_path / "config.yaml"
    data = {"record_types": record_types, "discover_record_types": False, **extra}
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("record_types", "expected"),
    [
        ({"order.v1": "acme_nowhere.models:OrderV1"},
         "record_types.order.v1: cannot import 'acme_nowhere.models'"),
        ({"order.v1": "acme_orders.checks:stock_available"},
         "record_types.order.v1: 'acme_orders.checks:stock_available' is not a pydantic model"),
        ({"order.v1": {"json_schema": "missing.json"}}, "record_types.order.v1: "),
    ],
    ids=["bad-import-path", "not-a-model", "missing-schema-file"],
)  # fmt: skip
def test_a_bad_record_type_exits_2_naming_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], record_types: dict[str, Any], expected: str
) -> None:
    """check-config refuses a record type that cannot be loaded, before anything connects."""
    assert main(["check-config", "--config", str(_config(tmp_path, record_types))]) == 2
    assert expected in capsys.readouterr().err


def test_a_check_on_a_field_the_type_lacks_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A check path into a nested field that order.v1 does not have is a config error."""
    check = {"name": "email_ok", "upstream": "email", "path": "/v1/email/verify",
             "body": {"email": "customer.mail"}, "pass_field": "deliverable"}  # fmt: skip
    config = _config(
        tmp_path, {"order.v1": ORDER},
        upstreams={"email": {"base_url": "http://127.0.0.1:1"}}, checks={"order.v1": [check]},
    )  # fmt: skip
    assert main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "checks.order.v1[0].body.email: customer has no field 'mail'" in err


def test_schemas_diff_passes_an_unchanged_type_and_fails_a_breaking_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--write stores the snapshot; diff then passes (exit 0), and fails (exit 1) once the
    snapshot holds a field the current model no longer has."""
    config = str(_config(tmp_path, {"order.v1": ORDER}))
    snapshots = tmp_path / "snapshots"
    argv = ["schemas", "diff", "--config", config, "--snapshots", str(snapshots)]
    assert main([*argv, "--write"]) == 0
    assert "order.v1: new" in capsys.readouterr().out
    assert main(argv) == 0
    assert "order.v1: compatible: no changes" in capsys.readouterr().out

    stored = json.loads((snapshots / "order.v1.json").read_text())
    stored["properties"]["coupon"] = {"type": "string"}
    (snapshots / "order.v1.json").write_text(json.dumps(stored))
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "order.v1: BREAKING" in out
    assert "coupon" in out
