"""A peer contestant: the schema-only job as a FastStream batch subscriber (``make bench``).

Written as FastStream's docs show it: a :class:`KafkaBroker`, one ``@broker.subscriber``
with ``batch=True`` (``max_records`` records per call, 2,000 by default as in issue 15's
comparison), and ``broker.publish(..., no_confirm=True)`` per outcome (key kept; ``publish_batch``
overflows aiokafka's 16 KiB batch buffer at this size), awaiting the batch's confirmations
before the handler returns. Each record is judged by :func:`devtools.bench.peer_job.judge`
(the processor's schemas, no ``processor`` import). FastStream's consumer commits the
batch's offsets once the handler returns (its default acknowledgement)::

    python -m devtools.bench.peer_faststream --bootstrap 127.0.0.1:9092 --input bench.in \\
        --valid bench.valid --invalid bench.invalid --dead-letter bench.dlq --group g

Needs the ``bench`` extra (``faststream[kafka]``); stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from devtools.bench.peer_job import Route, judge

BATCH = 2_000


def build(args: argparse.Namespace) -> FastStream:
    """The FastStream application: one batch subscriber that publishes each batch's outcomes."""
    broker = KafkaBroker(args.bootstrap)
    topics: dict[Route, str] = {
        "valid": args.valid, "invalid": args.invalid, "dead-letter": args.dead_letter,
    }  # fmt: skip

    @broker.subscriber(
        args.input, group_id=args.group, batch=True, max_records=args.batch,
        auto_offset_reset="earliest",
    )  # fmt: skip
    async def judge_batch(msg: KafkaMessage) -> None:
        sent = []
        for record in msg.raw_message:
            judged = judge(record.value, record.headers)
            headers = {"dlq.reason": judged.reason} if judged.route == "dead-letter" else None
            sent.append(await broker.publish(judged.value, topics[judged.route], key=record.key,
                                             headers=headers, no_confirm=True))  # fmt: skip
        await asyncio.gather(*sent)

    return FastStream(broker)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="peer_faststream", description=__doc__.splitlines()[0])
    for flag in ("--bootstrap", "--input", "--valid", "--invalid", "--dead-letter", "--group"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args(argv)
    asyncio.run(build(args).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
