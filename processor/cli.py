"""The ``processor`` command line.

- ``processor run --config FILE``: run the service until SIGTERM/SIGINT.
- ``processor check-config --config FILE``: validate and print the effective config
  (secrets masked), exit 2 on any error.
- ``processor topics create --config FILE``: create the input and outcome topics.

Exit codes: 0 done, 1 runtime failure (Kafka unreachable, an outcome not acknowledged),
2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from processor.config import Settings, load_settings
from processor.errors import ConfigError, ProcessorError
from processor.logs import configure_logging

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="processor", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the stream processor")
    check = sub.add_parser("check-config", help="validate and print the effective config")
    topics = sub.add_parser("topics", help="manage the topics")
    topics.add_argument("action", choices=["create"])
    topics.add_argument("--partitions", type=int, default=3)
    for p in (run, check, topics):
        p.add_argument("--config", type=Path, default=None, help="the YAML config file")
    return parser


async def _run(settings: Settings) -> int:
    from processor.app import App

    app = App(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.request_stop)
    return await app.run()


async def _create_topics(settings: Settings, partitions: int) -> int:
    from processor.kafka import ensure_topics

    t = settings.kafka.topics
    await ensure_topics(
        settings.kafka.bootstrap_servers, [t.input, t.valid, t.invalid, t.dead_letter], partitions
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``processor`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"processor: {exc}", file=sys.stderr)  # noqa: T201 - CLI error output
        return EXIT_CONFIG
    configure_logging(settings.logging.level, settings.logging.format)
    if args.command == "check-config":
        print(json.dumps(settings.model_dump(mode="json"), indent=2))  # noqa: T201 - output
        return EXIT_OK
    try:
        if args.command == "topics":
            return asyncio.run(_create_topics(settings, args.partitions))
        return asyncio.run(_run(settings))
    except ProcessorError as exc:
        print(f"processor: {exc}", file=sys.stderr)  # noqa: T201 - CLI error output
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
