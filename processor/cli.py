"""The ``processor`` command line: argument parsing, exit codes, and the commands' output.

Commands::

    processor run --config FILE [--workers N|auto]   run until SIGTERM/SIGINT (graceful)
    processor run --no-config                        run on defaults and the environment alone
    processor serve --config FILE                    the validation API alone (api: section)
    processor check-config --config FILE             validate; print the effective config (YAML)
    processor topics create --config FILE [--partitions N] [--replication-factor N]
                            [--topic-config KEY=VALUE ...]
                                                     create the input and outcome topics as
                                                     kafka.topic_settings says, print each,
                                                     exit 1 if one that exists differs
    processor produce --config FILE [--topic T]      publish JSON lines from stdin
    processor schemas diff --config FILE --snapshots DIR [--type T] [--write]
                                                     record types against stored JSON Schemas
    processor dlq redrive --config FILE [--reason GLOB] [--since T] [--until T] [--key K]
        [--partition N] [--start-offset N] [--end-offset N] [--max N] [--rate R]
        [--to TOPIC] [--park-topic TOPIC] [--max-redrives N] [--dry-run]
                                                     send dead letters back to the input
    processor --version

Exit codes (the README has the same table)::

    0    done: a run stopped gracefully, the config is valid, the topics exist, every line
         was produced; also check-config whose reader left early (``| head``)
    1    runtime failure: Kafka unreachable or refusing, an outcome or produced record not
         acknowledged, the HTTP port taken, a worker that did not stop cleanly; an
         unexpected error (with a traceback); ``schemas diff`` found a breaking change;
         ``topics create`` found a topic whose partitions or replication differ from the config
    2    bad configuration or usage, before anything connects: every config problem is
         printed, one line per key; ``run`` without ``--config`` or ``--no-config``
    130  interrupted (Ctrl-C) where no graceful stop applies (``produce`` reading stdin);
         ``run`` turns SIGINT into a graceful stop and exits 0
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from processor import __version__
from processor.cli_dlq import add_dlq_command, redrive_command
from processor.cli_produce import produce_command
from processor.errors import ConfigError, ProcessorError

if TYPE_CHECKING:  # the service's modules load after the early SIGTERM handler (see main)
    from processor.api.app import ApiRunner
    from processor.app import App
    from processor.config import Settings

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130
HELP_WIDTH = 88

DESCRIPTION = (
    "Validates CloudEvents records from a Kafka topic (schema, then upstream HTTP checks) "
    "and publishes each record's outcome to the valid, invalid or dead-letter topic."
)
EXIT_CODES = """exit codes:
  0    done (a run stopped gracefully on SIGTERM/SIGINT, the config is valid, ...)
  1    runtime failure (Kafka unreachable, an outcome not acknowledged, HTTP port taken);
       schemas diff: a breaking change
  2    bad configuration or usage (every problem printed, one line per key)
  130  interrupted (Ctrl-C) where no graceful stop applies"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="processor", description=textwrap.fill(DESCRIPTION, HELP_WIDTH), epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"processor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=summary, description=textwrap.fill(f"{summary}. {details}", HELP_WIDTH),
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip

    config_help = "the YAML config file (environment variables override its keys)"
    run = command(
        "run", "Run the stream processor until SIGTERM/SIGINT",
        "On a signal it stops taking records, drains those in flight, flushes and commits.",
    )  # fmt: skip
    source = run.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, metavar="FILE", help=config_help)
    source.add_argument(
        "--no-config", action="store_true",
        help="run on the defaults and the environment alone: no upstream checks unless the "
        "environment configures them",
    )  # fmt: skip
    run.add_argument(
        "--workers",
        default="1",
        metavar="N",
        help="worker processes in the group: a number or 'auto' (CPUs)",
    )
    run.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    serve = command(
        "serve", "Serve the validation API alone until SIGTERM/SIGINT",
        "/v1/validate, /v1/validate/batch and /v1/records on api.host:api.port; `run` serves "
        "it beside the stream consumer when api.enabled is true.",
    )  # fmt: skip
    check = command(
        "check-config", "Validate the config and print the effective config as YAML",
        "Secrets are masked. Every problem is printed, one line per key, and the exit code is 2.",
    )  # fmt: skip
    topics = command("topics", "Manage the input and outcome topics")
    topics.add_argument("action", choices=["create"], help="create the topics that do not exist")
    topics.add_argument(
        "--partitions", type=int, default=None, metavar="N",
        help="partitions of every topic (default: kafka.topic_settings)",
    )  # fmt: skip
    topics.add_argument(
        "--replication-factor", type=int, default=None, metavar="N",
        help="replication factor of every topic (default: kafka.topic_settings)",
    )  # fmt: skip
    topics.add_argument(
        "--topic-config", action="append", default=[], metavar="KEY=VALUE",
        help="a topic config of every new topic, e.g. retention.ms=604800000 (repeatable; "
        "added to kafka.topic_settings.configs)",
    )  # fmt: skip
    produce = command(
        "produce", "Publish JSON lines from stdin, one record per line",
        "Each non-blank line is sent as it is (invalid JSON too: the processor is the "
        "validator), with an idempotent acks=all producer; a summary goes to stderr.",
    )  # fmt: skip
    produce.add_argument("--topic", default=None, help="the topic (default: kafka.topics.input)")
    produce.add_argument(
        "--key-field", default=None, metavar="FIELD",
        help="the record key: this field of each event, e.g. id or data.customer_id "
        "(default: no key)",
    )  # fmt: skip
    schemas = command(
        "schemas", "Compare each record type's JSON Schema with a stored snapshot",
        "diff prints every change, breaking ones first, and exits 1 if any change would break "
        "consumers (a field removed or newly required, a type or constraint narrowed); "
        "--write stores the current schemas as the new snapshots. A type without a snapshot "
        "is new, which breaks nobody.",
    )  # fmt: skip
    schemas.add_argument("action", choices=["diff"], help="compare with the snapshots")
    schemas.add_argument(
        "--snapshots", type=Path, required=True, metavar="DIR",
        help="the directory of <type>.json snapshots (keep it in version control)",
    )  # fmt: skip
    schemas.add_argument("--type", default=None, metavar="T", help="only this record type")
    schemas.add_argument("--write", action="store_true", help="store the current schemas")
    add_dlq_command(command)
    for p in (serve, check, topics, produce, schemas):
        p.add_argument("--config", type=Path, metavar="FILE", help=config_help)
    return parser


def _say(message: str) -> None:
    print(f"processor: {message}", file=sys.stderr)  # noqa: T201 - CLI error output


def _workers(value: str) -> int:
    if value == "auto":
        return max(1, os.cpu_count() or 1)
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"--workers: expected a positive number or 'auto', got {value!r}")
    return count


def _as_worker(settings: Settings, index: int) -> Settings:
    """The settings of worker ``index``: its own instance and static-membership ids."""
    kafka = settings.kafka
    if kafka.group_instance_id is not None:
        kafka = kafka.model_copy(update={"group_instance_id": f"{kafka.group_instance_id}-{index}"})
    endpoint = settings.endpoint
    if endpoint.port:
        endpoint = endpoint.model_copy(update={"port": endpoint.port + index})
    api = settings.api
    if api.port:
        api = api.model_copy(update={"port": api.port + index})
    return settings.model_copy(
        update={"instance_id": f"{settings.instance_id}-w{index}", "kafka": kafka,
                "endpoint": endpoint, "api": api}
    )  # fmt: skip


async def _supervise(config: Path | None, workers: int, settings: Settings) -> int:
    from processor.supervisor import Supervisor

    supervisor = Supervisor(config, workers, settings.engine.drain_timeout_s)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, supervisor.request_stop)
    return await supervisor.run()


#: Allocations between young-generation collections (CPython's default is 700). A record
#: allocates hundreds of short-lived objects while thousands of records are in flight, so
#: a small threshold collects every few records and walks the in-flight graph each time,
#: for nothing: full-scale rate-limited and schema-only runs under ``gc.DEBUG_SAVEALL`` left
#: no cyclic garbage but start-up's. Measured over 30,000 upstream-bound records: 2.1 s of
#: 27.4 s CPU in the collector at 10,000, 0.12 s of 23.8 s at 100,000. One cost showed up at
#: full scale: while the intake paused and resumed at the in-flight cap many times a second
#: (re-fetching what each pause dropped), rate-limited's peak RSS was 171 MiB at 10,000 and
#: 290-337 MiB from 30,000 up; with the intake's resume hysteresis it is 124-130 MiB at
#: 100,000 (``docs/benchmarks.md``, issue 15).
GC_YOUNG_THRESHOLD = 100_000


def _tune_gc() -> None:
    """Freeze what start-up built (it lives as long as the process) and collect less often."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def _dump_tasks() -> None:
    """``kill -USR1 <pid>``: where every asyncio task waits (to diagnose a hang)."""
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)


#: Signals that arrived before the event loop took over (see :func:`_note_early_stop`).
_EARLY_STOP: list[int] = []


def _note_early_stop(signum: int, _frame: object) -> None:
    """A SIGTERM during start-up is remembered instead of killing the process: a supervisor
    or an orchestrator that stops a worker it has just started gets a clean exit 0."""
    _EARLY_STOP.append(signum)


#: The signals ``processor run`` answers, as :func:`install_signal_handlers` sets them up.
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


def install_signal_handlers(loop: asyncio.AbstractEventLoop, app: App | ApiRunner) -> None:
    """SIGTERM and SIGINT drain and stop, SIGUSR1 dumps the tasks, SIGUSR2 resumes intake
    held by the dead-letter guard (``processor serve`` has no intake: SIGUSR2 is left alone)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.request_stop)
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
    if hasattr(app, "resume_intake"):
        loop.add_signal_handler(signal.SIGUSR2, app.resume_intake)


async def _run(settings: Settings, *, api_only: bool = False) -> int:
    from processor.api.app import ApiRunner
    from processor.app import App

    app = ApiRunner(settings) if api_only else App(settings)
    _tune_gc()
    install_signal_handlers(asyncio.get_running_loop(), app)
    if _EARLY_STOP:  # asked to stop while starting: start, then stop at once, cleanly
        app.request_stop()
    return await app.run()


def _topic_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``topics create``'s flags as TopicSettings fields (flags win over the config)."""
    overrides: dict[str, Any] = {}
    for flag, value in (("partitions", args.partitions),
                        ("replication_factor", args.replication_factor)):  # fmt: skip
        if value is not None:
            if value < 1:
                raise ConfigError(f"--{flag.replace('_', '-')}: must be at least 1, got {value}")
            overrides[flag] = value
    configs: dict[str, str] = {}
    for entry in args.topic_config:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise ConfigError(f"--topic-config: expected KEY=VALUE, got {entry!r}")
        configs[key] = value
    if configs:
        overrides["configs"] = configs
    return overrides


async def _create_topics(settings: Settings, overrides: dict[str, Any]) -> int:
    """Create the missing topics as configured, print each topic, and exit 1 when one that
    exists has other partitions or another replication factor than the config expects."""
    from processor.kafka import TopicSpec, create_or_find_topics

    wanted = settings.kafka.topic_settings
    if overrides:
        extra = {**wanted.configs, **overrides.pop("configs", {})}
        per_topic = {role: own.model_copy(update={k: None for k in overrides})
                     for role, own in wanted.per_topic.items()}  # fmt: skip
        wanted = wanted.model_copy(update={**overrides, "configs": extra, "per_topic": per_topic})
    specs = [TopicSpec(name, *wanted.spec(role))
             for role, name in settings.kafka.topics.by_role().items()]  # fmt: skip
    found = await create_or_find_topics(
        settings.kafka.bootstrap_servers, specs, settings.kafka.request_timeout_ms / 1000,
        security=settings.kafka.security,
    )  # fmt: skip
    mismatches = []
    for topic in found:
        spec = topic.spec
        configs = "".join(f", {k}={v}" for k, v in spec.configs.items()) if topic.created else ""
        _print(f"{'created' if topic.created else 'exists '} {spec.name}: {topic.partitions} "
               f"partitions, replication factor {topic.replication_factor}{configs}\n")  # fmt: skip
        for what, has, expects in (
            ("partitions", topic.partitions, spec.partitions),
            ("replication factor", topic.replication_factor, spec.replication_factor),
        ):
            if has != expects:
                mismatches.append(f"{spec.name} has {what} {has}, the config expects {expects}")
    for mismatch in mismatches:
        _say(mismatch)
    return EXIT_FAILURE if mismatches else EXIT_OK


def _effective_config(settings: Settings) -> str:
    """The settings as YAML, secrets masked; the instance id only when the user set it
    (its default holds this command's own PID, not the one a run would have)."""
    exclude = None if "instance_id" in settings.model_fields_set else {"instance_id"}
    data = settings.model_dump(mode="json", exclude=exclude)
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _print(text: str) -> None:
    """Write to stdout; a reader that left early (``| head``) ends the output quietly."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at devnull so that flush cannot
        # fail too (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _schemas_diff(settings: Settings, snapshots: Path, only: str | None, *, write: bool) -> int:
    """Report each record type's changes against ``snapshots/<type>.json``; 1 if breaking."""
    from processor.schema_compat import compare, render_report

    names = settings.types.names()
    if only is not None:
        if only not in names:
            _say(f"--type: unknown record type {only!r} (known: {', '.join(names) or 'none'})")
            return EXIT_CONFIG
        names = [only]
    breaking = False
    for name in names:
        current = settings.types[name].json_schema()
        stored = snapshots / f"{name}.json"
        if stored.exists():
            changes = compare(json.loads(stored.read_text()), current)
            breaking = breaking or any(c.breaking for c in changes)
            _print(f"{name}: {render_report(changes)}")
        else:
            _print(f"{name}: new (no snapshot at {stored})\n")
        if write:
            snapshots.mkdir(parents=True, exist_ok=True)
            stored.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    return EXIT_FAILURE if breaking and not write else EXIT_OK


def _command(args: argparse.Namespace) -> int:
    unconfigured = args.command == "run" and args.config is None and not args.no_config
    if unconfigured and args.worker_index is None:  # a worker's supervisor checked already
        _say(
            "run needs --config FILE (the record types' upstream checks come from it); "
            "--no-config runs on the defaults and the environment alone"
        )
        return EXIT_CONFIG
    try:
        from processor.config import load_settings

        settings = load_settings(args.config)
        workers = _workers(args.workers) if args.command == "run" else 1
        topic_overrides = _topic_overrides(args) if args.command == "topics" else {}
        if args.command in ("run", "serve", "check-config"):
            from processor.custom_checks import load_custom_checks

            load_custom_checks(settings.checks)  # user code imports now, or exit 2
            if settings.tracing.enabled:
                from processor import tracing

                tracing.require()
    except ConfigError as exc:
        _say(str(exc))
        return EXIT_CONFIG
    if args.command == "check-config":
        _print(_effective_config(settings))
        return EXIT_OK
    if args.command == "schemas":
        return _schemas_diff(settings, args.snapshots, args.type, write=args.write)
    from processor.logs import configure_logging

    configure_logging(settings.logging.level, settings.logging.format)
    try:
        if args.command == "topics":
            return asyncio.run(_create_topics(settings, topic_overrides))
        if args.command == "produce":
            return asyncio.run(produce_command(settings, args.topic, args.key_field, _say))
        if args.command == "dlq":
            return asyncio.run(redrive_command(settings, args, _print))
        if args.command == "serve":
            return asyncio.run(_run(settings, api_only=True))
        if args.worker_index is not None:
            settings = _as_worker(settings, args.worker_index)
        elif workers > 1:
            return asyncio.run(_supervise(args.config, workers, settings))
        return asyncio.run(_run(settings))
    except ProcessorError as exc:
        _say(str(exc))
        return EXIT_FAILURE


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``processor`` console script; returns the exit code."""
    args = _parser().parse_args(argv)  # usage errors exit 2, --help and --version 0
    restore: Callable[[], object] | None = None
    if args.command == "run" and threading.current_thread() is threading.main_thread():
        # Before the service's modules load (a second on a busy machine): a supervisor or an
        # orchestrator that stops a worker it has just started gets a clean stop, not -15.
        previous = signal.signal(signal.SIGTERM, _note_early_stop) or signal.SIG_DFL
        restore = lambda: signal.signal(signal.SIGTERM, previous)  # noqa: E731
    try:
        return _command(args)
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    finally:
        if restore is not None:
            restore()


if __name__ == "__main__":
    sys.exit(main())
