"""`processor produce` against the real broker: each stdin line becomes one record, byte for
byte, keyed from a field; Ctrl-C while it waits for input exits 130 after what it sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from tests.support.setup import create_topics, unique_topics, write_config

TIMEOUT_S = 60.0
UNUSED_UPSTREAM = "http://127.0.0.1:9"  # produce never calls the upstreams


async def _read(bootstrap: str, topic: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    """The first ``count`` records of ``topic`` (fails after TIMEOUT_S)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await asyncio.wait_for(consumer.start(), TIMEOUT_S)
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while len(records) < count:
                batches = await consumer.getmany(timeout_ms=500)
                records += [r for batch in batches.values() for r in batch]
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 10)
    return records


async def _produce(config: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "processor.cli", "produce", "--config", str(config), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_produce_sends_each_line_as_it_is_keyed_by_the_named_field(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Every non-blank stdin line lands on the input topic unchanged, in order, keyed by
    --key-field when the line has it (invalid JSON too), and the summary counts them."""
    topics = unique_topics("produce")
    await create_topics(kafka_bootstrap, topics, partitions=1)
    config = write_config(tmp_path / "p.yaml", kafka_bootstrap, UNUSED_UPSTREAM, topics)
    data = {"company_name": "Acme GmbH", "email": "ops@acme.example", "country": "DE"}
    event = {
        "specversion": "1.0",
        "id": "c-1",
        "source": "/crm",
        "type": "customer.v1",
        "data": data,
    }
    lines = [json.dumps(event).encode(), b"not json {", b'{"type": "customer.v1"}']
    proc = await _produce(config, "--key-field", "id")
    _, err = await asyncio.wait_for(proc.communicate(b"\n".join(lines) + b"\r\n\n"), TIMEOUT_S)
    assert proc.returncode == 0, err
    assert err.decode() == f"processor: produced 3 records to {topics.input}\n"
    records = await _read(kafka_bootstrap, topics.input, 3)
    assert [(r.key, r.value) for r in records] == [
        (b"c-1", lines[0]), (None, lines[1]), (None, lines[2]),
    ]  # fmt: skip


async def test_ctrl_c_while_waiting_for_input_exits_130_after_sending_what_it_read(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """SIGINT while produce waits on an open stdin exits 130 with one message line, and the
    line read before it was published (to the --topic given)."""
    topics = unique_topics("produce-int")
    await create_topics(kafka_bootstrap, topics, partitions=1)
    config = write_config(tmp_path / "p.yaml", kafka_bootstrap, UNUSED_UPSTREAM, topics)
    proc = await _produce(config, "--topic", topics.valid)
    assert proc.stdin is not None
    assert proc.stderr is not None
    try:
        proc.stdin.write(b'{"id": "first"}\n')
        await proc.stdin.drain()
        [record] = await _read(kafka_bootstrap, topics.valid, 1)
        assert record.value == b'{"id": "first"}'
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT_S) == 130
        assert await proc.stderr.read() == b"processor: interrupted\n"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
