"""Tests of the import graph: dependencies point one way, libraries stay at their edges."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("processor", "schemas")

SERVICE_CORE = ("processor.errors", "processor.config")
LOW_LEVEL = (
    "processor.upstream",
    "processor.outcomes",
    "processor.decode",
    "processor.offsets",
    "processor.records",
    "processor.logs",
    "processor.slots",
)
ABOVE_LOW_LEVEL = (
    "processor.checks",
    "processor.pipeline",
    "processor.engine",
    "processor.consumer",
    "processor.app",
    "processor.cli",
)
ABOVE_PIPELINE = ("processor.engine", "processor.consumer", "processor.app", "processor.cli")
ABOVE_ENGINE = ("processor.app", "processor.cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(module: str, path: Path, known: frozenset[str] = frozenset()) -> set[str]:
    """Every module ``module`` imports, at any depth (function bodies, TYPE_CHECKING too).

    ``from package import name`` counts ``package.name`` as imported when it is one of the
    ``known`` modules (a submodule, not an attribute).
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - node.level + 1]
                base = ".".join([*base_parts, node.module] if node.module else base_parts)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)
    return found


MODULES: dict[str, Path] = {
    _module_name(path): path
    for package in PACKAGES
    for path in sorted((ROOT / package).rglob("*.py"))
}
GRAPH: dict[str, set[str]] = {
    name: _imports(name, path, frozenset(MODULES)) for name, path in MODULES.items()
}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _is_devtools(module: str) -> bool:
    return _within(module, ("processor.devtools",))


def _offending(module: str, forbidden: tuple[str, ...]) -> set[str]:
    return {imported for imported in GRAPH[module] if _within(imported, forbidden)}


def _modules(*prefixes: str) -> list[str]:
    return sorted(m for m in MODULES if _within(m, prefixes))


def test_the_graph_covers_both_packages() -> None:
    """The import graph is built from the real source tree (guards against a vacuous pass)."""
    assert {"processor.engine", "processor.upstream.client", "schemas.outcomes"} <= set(GRAPH)
    assert "processor.errors" in GRAPH["processor.engine"]
    assert "aiohttp" in GRAPH["processor.upstream.client"]


def test_the_relative_import_resolver_resolves_against_the_package(tmp_path: Path) -> None:
    """Relative imports are resolved to absolute module names like any other import."""
    source = tmp_path / "mod.py"
    source.write_text("from . import client\nfrom ..engine import Engine\nfrom .x import y\n")
    found = _imports("processor.upstream.mod", source, frozenset(MODULES))
    assert found == {
        "processor.upstream",
        "processor.upstream.client",
        "processor.engine",
        "processor.upstream.x",
    }


@pytest.mark.parametrize("module", _modules("schemas"))
def test_schemas_import_nothing_from_processor(module: str) -> None:
    """The data contracts depend on no processor code."""
    assert _offending(module, ("processor",)) == set()


def test_errors_imports_no_processor_module() -> None:
    """processor.errors is a leaf of the processor package."""
    imported = {m for m in GRAPH["processor.errors"] if _within(m, ("processor",))}
    assert imported == set()


#: Pure modules the config compiles checks with: they import errors and each other only.
CONFIG_LEAVES = {"processor.checkplan", "processor.fieldpaths", "processor.evidence"}


def test_config_imports_no_processor_module_but_errors() -> None:
    """processor.config depends on processor.errors and the check compiler's leaves only."""
    imported = {m for m in GRAPH["processor.config"] if _within(m, ("processor",))}
    assert imported <= {"processor.errors", *CONFIG_LEAVES}


@pytest.mark.parametrize("module", sorted(CONFIG_LEAVES))
def test_the_check_compiler_is_a_leaf(module: str) -> None:
    """The check compiler's modules import errors and each other, plus config for types."""
    imported = {m for m in GRAPH[module] if _within(m, ("processor",))}
    assert imported <= {"processor.errors", "processor.config", *CONFIG_LEAVES}


@pytest.mark.parametrize("module", _modules(*LOW_LEVEL))
def test_low_level_modules_do_not_import_the_layers_above(module: str) -> None:
    """upstream, outcomes, decode, offsets, records and logs import no pipeline, engine or app."""
    assert _offending(module, ABOVE_LOW_LEVEL) == set()


@pytest.mark.parametrize("module", ["processor.pipeline", "processor.checks"])
def test_the_pipeline_does_not_import_the_engine_or_above(module: str) -> None:
    """pipeline (and the checks it runs) import no engine, consumer, app or cli."""
    assert _offending(module, ABOVE_PIPELINE) == set()


@pytest.mark.parametrize("module", ["processor.engine", "processor.consumer", "processor.kafka"])
def test_engine_and_consumer_do_not_import_app_or_cli(module: str) -> None:
    """The engine, the consumer and the Kafka wiring import neither the app nor the CLI."""
    assert _offending(module, ABOVE_ENGINE) == set()


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"processor.app", "processor.cli"}))
def test_only_the_cli_imports_the_app(module: str) -> None:
    """The composition root is imported by the CLI (and itself) alone."""
    assert _offending(module, ("processor.app",)) == set()


@pytest.mark.parametrize("module", [m for m in sorted(MODULES) if not _is_devtools(m)])
def test_service_modules_do_not_import_devtools(module: str) -> None:
    """No service module depends on the developer tools."""
    assert _offending(module, ("processor.devtools",)) == set()


AIOKAFKA_EDGE = {"processor.kafka", "processor.consumer"}
AIOHTTP_EDGE = {"processor.upstream.client"}


def _library_cases(edge: set[str]) -> list[str]:
    return [m for m in sorted(MODULES) if m not in edge and not _is_devtools(m)]


@pytest.mark.parametrize("module", _library_cases(AIOKAFKA_EDGE))
def test_only_the_kafka_edge_imports_aiokafka(module: str) -> None:
    """aiokafka is imported by processor.kafka, processor.consumer and devtools only."""
    assert _offending(module, ("aiokafka",)) == set()


@pytest.mark.parametrize("module", _library_cases(AIOHTTP_EDGE))
def test_only_the_upstream_client_imports_aiohttp(module: str) -> None:
    """aiohttp is imported by processor.upstream.client and devtools only."""
    assert _offending(module, ("aiohttp",)) == set()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_opens_with_a_docstring(module: str) -> None:
    """Each module says what it owns in a docstring at its top."""
    docstring = ast.get_docstring(_parse(MODULES[module]))
    assert docstring is not None
    assert docstring.strip()
