"""The README stays true to the code: its example config and its reason-code catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.api.models import ERROR_STATUS
from schemas.outcomes import REASON_CATALOGUE, ReasonCode

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_embeds_the_example_config_verbatim() -> None:
    """The annotated config in the README is the file the demo runs with, to the byte."""
    start = README.index("```yaml\n# Record processor configuration") + len("```yaml\n")
    embedded = README[start : README.index("```", start)]
    assert embedded == (ROOT / "deploy" / "config" / "processor.example.yaml").read_text()


@pytest.mark.parametrize("code", list(ReasonCode))
def test_readme_documents_every_reason_code_with_its_topic(code: ReasonCode) -> None:
    """Each stable reason code has a row in the README naming the topic it leads to."""
    topic, _ = REASON_CATALOGUE[code]
    assert f"| `{code.value}` | {topic} |" in README


@pytest.mark.parametrize("code", list(ERROR_STATUS))
def test_readme_documents_every_api_error_code_with_its_status(code: str) -> None:
    """Each error code of the validation API has a row in the README with its HTTP status."""
    status, _ = ERROR_STATUS[code]
    api_errors = README.split("#### API error codes", 1)[1].split("\n## ", 1)[0]
    assert f"| `{code}` | {status} |" in api_errors


def test_first_screen_shows_both_commands() -> None:
    """`make run` and `make test` are on the README's first screen (first 25 lines)."""
    first_screen = "\n".join(README.splitlines()[:25])
    assert "make run" in first_screen
    assert "make test" in first_screen


def _alerts() -> list[str]:
    import yaml

    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    return [r["alert"] for group in rules["groups"] for r in group["rules"]]


@pytest.mark.parametrize("alert", _alerts())
def test_the_runbook_section_covers_every_alert(alert: str) -> None:
    """README's "Runbook: every alert" has an entry for each alert rule."""
    runbook = README.split("### Runbook: every alert", 1)[1].split("\n## ", 1)[0]
    assert f"- **{alert}**" in runbook
