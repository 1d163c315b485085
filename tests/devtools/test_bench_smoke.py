"""``make bench`` still works: its two cheapest scenarios, tiny, against the real broker.

Not a performance test (the numbers are only checked to exist and be consistent); it
keeps the benchmark from rotting between runs. The scenarios that change the shared
simulator's settings are left to ``make bench`` itself.
"""

from __future__ import annotations

import uuid

import pytest

from devtools.bench.run import Bench, Sizes, scenarios


@pytest.mark.integration
async def test_passthrough_and_schema_only_measure_every_record(
    kafka_bootstrap: str, simulator_url: str
) -> None:
    """Two bench scenarios run end to end on the real broker and account for every record,
    with the comparison of the two."""
    bench = Bench(kafka_bootstrap, simulator_url, f"smoke-{uuid.uuid4().hex[:8]}")
    sizes = Sizes(passthrough=3_000, schema_only=2_000)
    results = {r.scenario: r for r in await scenarios(bench, sizes, {"passthrough", "schema-only"})}
    passthrough, schema_only = results["passthrough"], results["schema-only"]
    # no peer ran: only the copy-loop comparison is reported
    assert set(results) == {"passthrough", "schema-only", "schema-only vs copy loop"}
    assert results["schema-only vs copy loop"].ratio == schema_only.ratio

    for result, count in ((passthrough, 3_000), (schema_only, 2_000)):
        assert result.extra["outcomes"] == count, result
        assert result.records_per_s is not None
        assert result.records_per_s > 0
        assert result.cpu_s_per_1k is not None
        assert result.cpu_s_per_1k > 0
        assert result.peak_rss_mib is not None
        assert result.peak_rss_mib > 10
    assert schema_only.bound == passthrough.records_per_s
    # where the cores went in the window: the machine, the processor, the broker beside it
    cores = schema_only.extra
    assert cores["cores_machine"] >= cores["cores_tested"] > 0, cores
    assert cores["cores_broker"] > 0, cores
    assert schema_only.ratio is not None
    outcome_log = (bench.work / "schema-only.log").read_text()
    assert '"processor.stopped"' in outcome_log  # the processor ran and shut down cleanly
