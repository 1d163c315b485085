"""Tests of the import graph: dependencies point one way, libraries stay at their edges."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("processor", "schemas", "devtools")

#: The service's layers, bottom first. A module imports only modules of lower layers (and
#: of its own subpackage: processor.upstream.*). docs/architecture.md draws the same stack.
LAYERS: tuple[tuple[str, ...], ...] = (
    # values and leaves: import nothing of the service
    ("processor", "processor.errors", "processor.inputs", "processor.offsets",
     "processor.slots", "processor.waits", "processor.logs", "processor.documents"),
    # pure building blocks over the error tree: paths, evidence bounds, the custom-check
    # API, record types, schema comparison, batch endpoints
    ("processor.fieldpaths", "processor.evidence", "processor.sdk", "processor.record_types",
     "processor.schema_compat", "processor.payloads", "processor.batchplan"),
    ("processor.checkplan", "processor.jsonschema_types"),  # checks compiled; JSON Schema types
    ("processor.record_type_loading",),  # record types from config and entry points
    ("processor.topic_settings",),  # kafka.topic_settings: what topics create makes
    ("processor.config_base",),  # frozen sections, one-line-per-problem errors
    ("processor.config_security", "processor.config_upstream"),  # sections of their own
    # the validation API's guards (api.protection, embedded by the config): the error shape,
    # then the request context, the guards, the step that joins two, and their installer
    ("processor.api", "processor.api.errors"),
    ("processor.api.context",),
    ("processor.api.limits", "processor.api.auth", "processor.api.signing",
     "processor.api.ratelimit", "processor.api.idempotency"),
    ("processor.api.access",),
    ("processor.api.protection",),
    ("processor.config_api",),  # the api: section around api.protection
    ("processor.config",),
    ("processor.kafka_auth",),  # TLS context, OAUTHBEARER tokens (aiohttp), failure diagnosis
    # the edges (one library each) and the outcome values
    ("processor.tracing",),  # the OpenTelemetry edge (optional extra)
    ("processor.decode", "processor.outcomes", "processor.kafka", "processor.upstream",
     "processor.endpoint"),
    ("processor.custom_checks",),  # user code behind an upstream handle
    ("processor.metrics", "processor.checks", "processor.guard"),
    ("processor.reachability",),  # the broker's transitions: events and a gauge
    ("processor.pipeline",),
    ("processor.validation",),  # the pipeline over one set of upstream callers, for both doors
    ("processor.engine",),
    ("processor.transactions",),  # exactly-once commits over the engine's holds
    ("processor.intake", "processor.watchdog"),
    ("processor.status",),
    ("processor.api.models",),  # the validation API: responses and error statuses,
    ("processor.api.service",),  # judging through the pipeline, batches under a deadline,
    ("processor.api.routes",),  # the routes,
    ("processor.api.app",),  # the application and its lifetime (run and serve)
    ("processor.api.openapi",),  # its OpenAPI document and the committed snapshot
    ("processor.app", "processor.supervisor", "processor.redrive"),
    ("processor.cli_dlq",),  # the dlq command: arguments and runner
    ("processor.cli_produce",),  # the produce command: stdin lines as records
    ("processor.cli",),
)  # fmt: skip
SUBPACKAGES = ("processor.upstream", "processor.kafka")


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
    return _within(module, ("devtools",))


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


def _in_layer(module: str, layer: tuple[str, ...]) -> bool:
    """``module`` is named in ``layer``, or belongs to a subpackage named there."""
    return module in layer or _within(module, tuple(p for p in layer if p in SUBPACKAGES))


def _layer_of(module: str) -> int:
    """The index of the layer that holds ``module`` (a subpackage's modules share its layer)."""
    for index, layer in enumerate(LAYERS):
        if _in_layer(module, layer):
            return index
    raise LookupError(f"{module} is in no layer of LAYERS")


def _wrong_way(module: str, imported: set[str]) -> set[str]:
    """The service modules ``module`` imports that are not below it (nor in its subpackage)."""
    own = _layer_of(module)
    return {
        target
        for target in imported
        if _within(target, ("processor",))
        and not _is_devtools(target)
        and target != module
        and not any(_within(module, (p,)) and _within(target, (p,)) for p in SUBPACKAGES)
        and _layer_of(target) >= own
    }


SERVICE_MODULES = [m for m in sorted(MODULES) if _within(m, ("processor",)) and not _is_devtools(m)]


def test_every_service_module_has_exactly_one_layer() -> None:
    """Each module of processor/ is placed in the layers once (a new module must be placed)."""
    for module in SERVICE_MODULES:
        holders = [layer for layer in LAYERS if _in_layer(module, layer)]
        assert len(holders) == 1, f"{module} is in {len(holders)} layers"
    placed = {name for layer in LAYERS for name in layer}
    assert placed <= set(SERVICE_MODULES), placed - set(SERVICE_MODULES)


@pytest.mark.parametrize("module", SERVICE_MODULES)
def test_imports_point_down_the_layers(module: str) -> None:
    """A service module imports only modules of the layers below its own."""
    assert _wrong_way(module, GRAPH[module]) == set()


def test_an_arrow_pointing_up_or_sideways_is_caught() -> None:
    """The layer check flags an import of a higher or same-layer module (it can fail)."""
    assert _wrong_way("processor.engine", {"processor.intake"}) == {"processor.intake"}
    assert _wrong_way("processor.kafka", {"processor.outcomes"}) == {"processor.outcomes"}
    assert _wrong_way("processor.upstream.resilient", {"processor.upstream.cache"}) == set()
    assert _wrong_way("processor.cli", {"processor.app", "processor.errors"}) == set()


@pytest.mark.parametrize("module", _modules("processor", "schemas"))
def test_service_modules_do_not_import_devtools(module: str) -> None:
    """No module of the service or its contracts depends on the developer tools."""
    assert _offending(module, ("devtools",)) == set()


# The developer tools, lowest layer first: a module imports devtools modules of lower
# layers only (and processor/schemas freely: the tools drive the service from outside).
DEVTOOLS_LAYERS: tuple[tuple[str, ...], ...] = (
    (  # foundations: import no other devtools module
        "devtools", "devtools.corpus", "devtools.hostile", "devtools.local_kafka",
        "devtools.simulator.stats",
        "devtools.simulator.verdicts", "devtools.simulator.batch", "devtools.bench",
        "devtools.bench.stats",
        "devtools.bench.passthrough", "devtools.bench.peer_job",
    ),
    (  # what the tools are built from: the simulator's server, the stack, the referee
        "devtools.simulator.server", "devtools.stack", "devtools.reconcile",
        "devtools.secure_kafka",
        "devtools.bench.kafka_io", "devtools.bench.report", "devtools.bench.procs",
        "devtools.bench.peer_quix", "devtools.bench.peer_faststream",  # the peer contestants
    ),
    # a package's face, the bench's chart, its API scenario, its peers and batched rows
    ("devtools.simulator", "devtools.bench.chart", "devtools.bench.api_load",
     "devtools.bench.peers", "devtools.bench.batched"),
    ("devtools.demo", "devtools.soak_memory", "devtools.bench.run"),  # the tools
    ("devtools.bench.cli",),  # the bench's command line, over its scenarios
    ("devtools.simulator.__main__", "devtools.bench.__main__"),  # python -m entry points
)  # fmt: skip


def _upward_imports(
    module: str, graph: dict[str, set[str]], layers: tuple[tuple[str, ...], ...]
) -> set[str]:
    """The devtools modules ``module`` imports from its own layer or a higher one."""
    rank = {name: i for i, layer in enumerate(layers) for name in layer}
    return {m for m in graph[module] if m in rank and m != module and rank[m] >= rank[module]}


def test_every_devtools_module_is_in_exactly_one_layer() -> None:
    """The devtools layers name each devtools module once, and nothing else."""
    placed = [name for layer in DEVTOOLS_LAYERS for name in layer]
    assert sorted(placed) == _modules("devtools")


@pytest.mark.parametrize("module", _modules("devtools"))
def test_devtools_modules_import_only_lower_layers(module: str) -> None:
    """A developer tool depends only on the devtools layers below its own."""
    assert _upward_imports(module, GRAPH, DEVTOOLS_LAYERS) == set()


def test_the_layer_check_catches_an_arrow_pointing_the_wrong_way() -> None:
    """An import from a foundation up to a tool, or within one layer, is reported."""
    graph = {"devtools.corpus": {"devtools.demo", "devtools.local_kafka", "processor.config"}}
    assert _upward_imports("devtools.corpus", graph, DEVTOOLS_LAYERS) == {
        "devtools.demo",
        "devtools.local_kafka",
    }


AIOKAFKA_EDGE = {m for m in MODULES if m == "processor.kafka" or m.startswith("processor.kafka.")}
#: kafka_auth: the OAUTHBEARER client-credentials token endpoint (not an upstream API).
AIOHTTP_EDGE = {"processor.upstream.client", "processor.kafka_auth"}


def _library_cases(edge: set[str]) -> list[str]:
    return [m for m in sorted(MODULES) if m not in edge and not _is_devtools(m)]


@pytest.mark.parametrize("module", _library_cases(AIOKAFKA_EDGE))
def test_only_the_kafka_edge_imports_aiokafka(module: str) -> None:
    """aiokafka is imported by processor.kafka and devtools only."""
    assert _offending(module, ("aiokafka",)) == set()


@pytest.mark.parametrize("module", _library_cases(AIOHTTP_EDGE))
def test_only_the_upstream_client_imports_aiohttp(module: str) -> None:
    """aiohttp is imported by processor.upstream.client, kafka_auth and devtools only."""
    assert _offending(module, ("aiohttp",)) == set()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_opens_with_a_docstring(module: str) -> None:
    """Each module says what it owns in a docstring at its top."""
    docstring = ast.get_docstring(_parse(MODULES[module]))
    assert docstring is not None
    assert docstring.strip()
