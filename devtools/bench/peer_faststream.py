"""A peer contestant: the schema-only job as a FastStream batch subscriber (``make bench``).

Written as FastStream's docs show it: a :class:`KafkaBroker`, one ``@broker.subscriber``
with ``batch=True`` (``max_records`` records per call, 2,000 by default as in issue 15's
comparison), and ``broker.publish_batch`` to the valid, invalid and dead-letter topics, one
batch per topic per call. Each record is judged by :func:`devtools.bench.peer_job.judge`
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
        routed: dict[Route, list[bytes]] = {"valid": [], "invalid": [], "dead-letter": []}
        for value, headers in zip(msg.body, msg.batch_headers, strict=True):
            judged = judge(value, [(k, v.encode()) for k, v in headers.items()])
            routed[judged.route].append(judged.value or b"")
        await asyncio.gather(*(broker.publish_batch(*values, topic=topics[route])
                               for route, values in routed.items() if values))  # fmt: skip

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
