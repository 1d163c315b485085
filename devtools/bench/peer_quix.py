"""A peer contestant: the schema-only job as a Quix Streams application (``make bench``).

Written as Quix Streams' docs show it: an :class:`Application` in a consumer group, a
``StreamingDataFrame`` over the input topic that judges each record with its headers
(``apply(..., metadata=True)``), then one branch per outcome (``filter``, then ``to_topic``)
to the valid, invalid and dead-letter topics, keys kept. Each record is judged by
:func:`devtools.bench.peer_job.judge` (the processor's schemas, no ``processor`` import);
Quix Streams commits at its default interval, at least once::

    .venv-quix/bin/python -m devtools.bench.peer_quix --bootstrap 127.0.0.1:9092 \\
        --input bench.in --valid bench.valid --invalid bench.invalid \\
        --dead-letter bench.dlq --group g

Quix Streams 3.28 caps pydantic below 2.14, under the project's pin, so it runs from its
own virtualenv (``make bench`` builds ``.venv-quix`` from ``devtools/bench/quix.txt``),
never the project's. Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from quixstreams import Application

from devtools.bench.peer_job import Judged, Route, judge


def _judge(value: bytes | None, key: Any, timestamp: int, headers: Any) -> Judged:
    return judge(value, headers or ())


def build(args: argparse.Namespace) -> Application:
    """The application: judge every record, then route it to its outcome topic."""
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=".run/bench/quix-state",  # unused (a stateless job), kept out of the repo
    )
    source = app.topic(args.input, key_deserializer="bytes", value_deserializer="bytes")
    judged = app.dataframe(source).apply(_judge, metadata=True)
    routes: dict[Route, str] = {
        "valid": args.valid, "invalid": args.invalid, "dead-letter": args.dead_letter,
    }  # fmt: skip
    for route, name in routes.items():
        target = app.topic(name, key_serializer="bytes", value_serializer="bytes")
        branch = judged.filter(lambda j, route=route: j.route == route)
        branch.apply(lambda j: j.value or b"").to_topic(target)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="peer_quix", description=__doc__.splitlines()[0])
    for flag in ("--bootstrap", "--input", "--valid", "--invalid", "--dead-letter", "--group"):
        parser.add_argument(flag, required=True)
    build(parser.parse_args(argv)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
