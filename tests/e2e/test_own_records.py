"""A team's own record types and checks (examples/orders) under `processor run --workers 2`."""

from __future__ import annotations

import json
import os
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from devtools.corpus import CorpusRecord, OutcomeTopic
from devtools.reconcile import OutcomeCollector, publish_corpus, reconcile
from devtools.stack import create_topics, save_config, topics_named
from tests.support.cli_process import CliProcesses, exited

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "orders"
STOCK_RPS = 100.0
STOCK_BURST = 5


def _event(kind: str, record_id: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": record_id, "source": "/shop", "type": kind, "data": data}
    ).encode()


def _order(i: int, skus: list[tuple[str, int]], **change: Any) -> dict[str, Any]:
    lines = [{"sku": sku, "quantity": qty, "unit_price": "2.50"} for sku, qty in skus]
    total = sum(Decimal("2.50") * qty for _, qty in skus)
    order = {
        "order_id": f"ord-{i:06d}",
        "customer": {"id": f"c-{i % 7}", "email": f"buyer{i % 11}@example.com", "name": "Dana"},
        "currency": "EUR",
        "amount": str(total),
        "lines": lines,
    }
    return {**order, **change}


def _case(
    i: int, kind: str, data: dict[str, Any], topic: OutcomeTopic, reason: str, label: str
) -> CorpusRecord:
    record_id = f"{kind}-{i}"
    return CorpusRecord(
        label=label, key=f"k{i % 13}".encode(), value=_event(kind, record_id, data),
        headers=(("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),),
        record_id=record_id, expected_topic=topic, expected_reason=reason,
    )  # fmt: skip


def orders_corpus(count: int) -> list[CorpusRecord]:
    """Orders and returns whose outcome is known: every outcome kind, both record types."""
    out = []
    for i in range(count):
        match i % 10:
            case 0 | 1 | 2:
                data = _order(i, [(f"MUG-{i % 5}", 2), (f"TEA-{i % 3}", 1)])
                out.append(_case(i, "order.v1", data, "valid", "ok", "order"))
            case 3:
                data = _order(i, [("bad sku", 1)])
                out.append(_case(i, "order.v1", data, "invalid", "schema.invalid", "bad sku"))
            case 4:
                data = _order(i, [(f"OOS-{i % 4}", 3), ("MUG-1", 1)])
                out.append(_case(i, "order.v1", data, "invalid", "upstream.rejected", "oos"))
            case 5 if i % 50 == 5:
                data = _order(i, [("BROKEN-1", 1)])
                out.append(
                    _case(i, "order.v1", data, "dead-letter", "upstream.unavailable", "broken")
                )
            case 6:
                line = {"sku": f"MUG-{i % 5}", "quantity": 1}
                ret = {"return_id": f"ret-{i:06d}", "order_id": f"ord-{i:06d}",
                       "reason": "damaged", "lines": [line]}  # fmt: skip
                out.append(_case(i, "return.v1", ret, "valid", "ok", "return"))
            case 7:
                ret = {"return_id": f"ret-{i:06d}", "order_id": "nope", "reason": "bored",
                       "lines": [{"sku": "MUG-1", "quantity": 0}]}  # fmt: skip
                out.append(_case(i, "return.v1", ret, "invalid", "schema.invalid", "bad return"))
            case 8:
                lines = [{"sku": "MUG-1", "quantity": 1}, {"sku": f"GONE-{i}", "quantity": 1}]
                ret = {"return_id": f"ret-{i:06d}", "order_id": f"ord-{i:06d}",
                       "reason": "other", "lines": lines}  # fmt: skip
                out.append(
                    _case(i, "return.v1", ret, "invalid", "upstream.rejected", "unknown sku")
                )
            case _:
                data = _order(i, [(f"LOW-{i % 3}", 1)])
                out.append(_case(i, "order.v1", data, "valid", "ok", "low stock, enough"))
    return out


def _config(tmp_path: Path, bootstrap: str, simulator_url: str, base: str) -> Path:
    data = yaml.safe_load((EXAMPLE / "config.yaml").read_text())
    data["record_types"]["return.v1"]["json_schema"] = str(EXAMPLE / "schemas" / "return.v1.json")
    data["kafka"].update(
        bootstrap_servers=bootstrap, group_id=f"group-{base}",
        topics=topics_named(base).model_dump(),
    )  # fmt: skip
    for upstream in data["upstreams"].values():
        upstream["base_url"] = simulator_url
    data["upstreams"]["stock"].update(rate_limit_rps=STOCK_RPS, rate_limit_burst=STOCK_BURST)
    data["upstreams"]["stock"]["retry"].update(backoff_initial_s=0.01, backoff_max_s=0.05)
    data["endpoint"]["port"] = 0
    return save_config(tmp_path / "orders.yaml", data)


async def test_own_record_types_and_checks_under_two_workers(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path, cli: CliProcesses
) -> None:
    """The example package's order.v1 (pydantic, custom stock check) and return.v1 (JSON
    Schema, declarative fan-out) each get exactly their expected outcome under two workers:
    schema errors with field paths, out-of-stock orders rejected with the custom check's
    reason, a dead letter when the stock API keeps failing; the stock calls respect the
    rate limit and show up in the upstream metrics."""
    base = f"orders-{uuid.uuid4().hex[:8]}"
    topics = topics_named(base)
    await create_topics(kafka_bootstrap, topics, partitions=4)
    async with aiohttp.ClientSession() as http:
        await http.post(f"{simulator_url}/_reset", timeout=aiohttp.ClientTimeout(total=10))
    corpus = orders_corpus(600)
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    config = _config(tmp_path, kafka_bootstrap, simulator_url, base)
    env = {**os.environ, "PYTHONPATH": str(EXAMPLE)}
    proc = await cli.start(config, tmp_path / "orders.log", "--workers", "2", env=env)

    collector = OutcomeCollector(kafka_bootstrap, topics)
    complete = await collector.collect(set(coords), timeout_s=180, give_up=exited(proc))
    assert complete, proc.tail()
    stock_calls = 0.0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for started in proc.events("processor.started"):  # one per worker
            async with http.get(f"{started['http']}/metrics") as resp:
                stock_calls += _sample_sum(await resp.text(), "processor_upstream_calls_total",
                                           'upstream="stock"')  # fmt: skip
        async with http.get(f"{simulator_url}/_stats") as resp:
            stats = await resp.json()
    assert await proc.stop() == 0, proc.tail()

    result = reconcile(corpus, coords, collector.seen)
    assert (result.missing, result.wrong, result.duplicates) == ([], [], 0), result
    assert set(result.by_topic) == {"valid", "invalid", "dead-letter"}
    by_coords = dict(zip(coords, corpus, strict=True))
    seen = {(by_coords[o.input].label, o.kind): o for o in collector.in_order}
    bad_sku = json.loads(seen[("bad sku", "invalid")].value or b"{}")
    assert {r["field"] for r in bad_sku["reasons"]} == {"lines.0.sku"}
    bad_return = json.loads(seen[("bad return", "invalid")].value or b"{}")
    assert {r["field"] for r in bad_return["reasons"]} >= {"order_id", "reason", "lines.0.quantity"}
    oos = json.loads(seen[("oos", "invalid")].value or b"{}")
    [rejection] = oos["reasons"]
    assert rejection["check"] == "stock_available"
    assert rejection["message"].startswith("stock_available: out of stock: OOS-")
    unknown = json.loads(seen[("unknown sku", "invalid")].value or b"{}")
    assert [r["check"] for r in unknown["reasons"]] == ["skus_known"]
    valid_order = seen[("order", "valid")]
    assert dict(valid_order.headers)["content-type"] == b"application/cloudevents+json"
    assert dict(valid_order.headers)["traceparent"].startswith(b"00-0af7")

    # The custom check's calls went through the stock upstream's stack: counted, and never
    # faster than its rate limit allows (each worker process has its own limiter).
    stock_requests = sum(stats["by_endpoint"]["/v1/stock/{sku}"].values())
    assert stock_calls >= stock_requests > 0
    per_second = stats["by_second"]["/v1/stock/{sku}"].values()
    assert max(per_second) <= 2 * (STOCK_RPS + STOCK_BURST), sorted(per_second)


def _sample_sum(metrics: str, name: str, label: str) -> float:
    """The sum of a metric's samples whose labels include ``label``."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(name + "{") and label in line
    )
