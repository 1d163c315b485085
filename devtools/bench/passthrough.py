"""The ceiling: a minimal aiokafka consume-then-produce loop, no validation at all.

Run as its own process by the benchmark, exactly like the processor: one consumer in a
group on the input topic, one producer with the processor's settings (``acks=all``,
idempotent, ``linger_ms=5``), every input copied to the output topic with its key, plus a
``bench.input.ts`` header (the input's timestamp, for the latency measurement). Sends are
pipelined: the loop polls again while earlier batches wait for their acknowledgements, and
commits each partition's offset once everything before it is acknowledged::

    python -m devtools.bench.passthrough --bootstrap 127.0.0.1:9092 \\
        --input bench.in --output bench.valid --group bench-passthrough

Stops on SIGTERM after committing what was acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections import deque
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

MAX_BATCHES_IN_FLIGHT = 16
COMMIT_EVERY_BATCHES = 50


async def copy(bootstrap: str, source: str, target: str, group: str, stop: asyncio.Event) -> int:
    """Copy ``source`` to ``target`` until ``stop`` is set; return the records copied."""
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest",
    )  # fmt: skip
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    await consumer.start()
    batches: deque[tuple[asyncio.Future[Any], dict[TopicPartition, OffsetAndMetadata]]] = deque()
    done: dict[TopicPartition, OffsetAndMetadata] = {}
    copied = polls = 0
    try:
        while not stop.is_set():
            got = await consumer.getmany(timeout_ms=100, max_records=1_000)
            acks, offsets = [], {}
            for tp, msgs in got.items():
                for msg in msgs:
                    stamp = [("bench.input.ts", str(msg.timestamp).encode())]
                    acks.append(await producer.send(target, msg.value, key=msg.key, headers=stamp))
                offsets[tp] = OffsetAndMetadata(msgs[-1].offset + 1, "")
                copied += len(msgs)
            if acks:
                batches.append((asyncio.gather(*acks), offsets))
            while batches and (batches[0][0].done() or len(batches) > MAX_BATCHES_IN_FLIGHT):
                acked, offsets = batches.popleft()
                await acked
                done.update(offsets)
            polls += 1
            if done and polls % COMMIT_EVERY_BATCHES == 0:
                await consumer.commit(done)
                done = {}
        for acked, offsets in batches:
            await acked
            done.update(offsets)
        if done:
            await consumer.commit(done)
    finally:
        for client in (consumer, producer):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.stop(), 10)
    return copied


async def _main(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await copy(args.bootstrap, args.input, args.output, args.group, stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="passthrough", description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    args = parser.parse_args(argv)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
