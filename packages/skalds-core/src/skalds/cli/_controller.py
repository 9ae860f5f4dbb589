"""``skalds controller`` and ``skalds up``: the System Controller, alone or with a node.

Both need the controller extra; without it they say what to install. Settings come
from the environment and ``.env`` (``SYSTEM_CONTROLLER_MODE``, ``SYSTEM_CONTROLLER_HOST``,
``SYSTEM_CONTROLLER_PORT``, ``DISPATCHER_STRATEGY``, ``SKALDS_API_TOKEN``, ``KAFKA_HOST``,
``REDIS_HOST``, ``MONGO_HOST``, ``SKALDS_STORE``, ``SKALDS_DB``...); options given here win.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pydantic import ValidationError

from skalds.cli._node import (
    add_resources_option,
    add_worker_options,
    import_worker,
    node_overrides,
)
from skalds.errors import ConfigError, MissingExtraError, SkaldsError
from skalds.utils.logging import configure_logging

__all__ = [
    "SETTINGS_HELP",
    "add_controller_arguments",
    "add_controller_commands",
    "run_controller",
    "run_up",
]

SETTINGS_HELP = (
    "Settings come from the environment and .env: SYSTEM_CONTROLLER_MODE, "
    "SYSTEM_CONTROLLER_HOST, SYSTEM_CONTROLLER_PORT, DISPATCHER_STRATEGY, SKALDS_API_TOKEN, "
    "KAFKA_HOST, REDIS_HOST, MONGO_HOST (or SKALDS_EVENT_BUS, SKALDS_CACHE, SKALDS_STORE); "
    "the options given here win."
)

_MODES = ["CONTROLLER", "MONITOR", "DISPATCHER"]
_STRATEGIES = ["LEAST_TASKS", "ROUND_ROBIN", "RANDOM"]


def add_controller_arguments(parser: argparse.ArgumentParser, *, log_level: bool = True) -> None:
    """The options of ``skalds controller`` (also ``python -m skalds.system_controller.main``)."""
    parser.add_argument(
        "--host",
        help="address to listen on (default: SYSTEM_CONTROLLER_HOST "
        "or 127.0.0.1; any other address needs SKALDS_API_TOKEN)",
    )
    parser.add_argument(
        "--port",
        type=int,
        help="port (default: SYSTEM_CONTROLLER_PORT or 8000; 0 picks a free one)",
    )
    parser.add_argument(
        "--mode",
        choices=_MODES,
        type=str.upper,
        help="CONTROLLER = API only, MONITOR = + monitor and live events, "
        "DISPATCHER = + dispatcher (default: SYSTEM_CONTROLLER_MODE or DISPATCHER)",
    )
    parser.add_argument(
        "--strategy",
        choices=_STRATEGIES,
        type=str.upper,
        help="how the dispatcher picks a node (default: DISPATCHER_STRATEGY or LEAST_TASKS)",
    )
    if log_level:
        parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default: LOG_LEVEL)")
    parser.add_argument("--access-log", action="store_true", help="log every API request")


def _service_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "services",
        "run on real services instead of the in-memory backends (or set "
        "KAFKA_HOST, REDIS_HOST, MONGO_HOST / SKALDS_EVENT_BUS, SKALDS_CACHE, SKALDS_STORE; "
        "SKALDS_DB for --db)",
    )
    group.add_argument("--kafka", metavar="HOST:PORT", help="the event bus on Kafka")
    group.add_argument("--redis", metavar="HOST:PORT", help="the cache on Redis/Valkey")
    group.add_argument("--mongo", metavar="URL", help="the store on MongoDB (mongodb://...)")
    group.add_argument(
        "--db",
        metavar="PATH",
        help="keep the tasks in this SQLite file (created when missing) so they outlive "
        "the process; the node keeps its id there and restarts its tasks "
        "(default: SKALDS_DB)",
    )


def add_controller_commands(sub: Any) -> None:
    """Add ``controller`` and ``up`` to the ``skalds`` subparsers."""
    controller = sub.add_parser(
        "controller",
        help="run the System Controller (REST API, monitor, dispatcher)",
        description="Run the System Controller: the REST API (docs at /api/docs) and, "
        "depending on the mode, the monitor and the dispatcher. " + SETTINGS_HELP,
    )
    add_controller_arguments(controller)
    controller.set_defaults(handler=run_controller)

    up = sub.add_parser(
        "up",
        help="run everything in one process: controller + a node with the installed workers",
        description="Run the controller (every part: API, monitor, dispatcher) and a node "
        "running the installed workers in one process, on in-memory backends unless "
        "services are given. Prints the API's address; Ctrl-C stops everything. " + SETTINGS_HELP,
    )
    add_controller_arguments(up, log_level=False)
    add_worker_options(up)
    add_resources_option(up)
    _service_options(up)
    up.add_argument(
        "--no-log-files",
        action="store_true",
        help="do not write <log path>/<task id>.log per task (the API's logs need them)",
    )
    up.set_defaults(handler=run_up)


def _host_port(value: str, option: str, default_port: int) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, default_port
    if not host or not port.isdigit():
        raise ConfigError(f"{option} {value!r}: expected HOST:PORT, e.g. 127.0.0.1:{default_port}")
    return host, int(port)


def _service_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings for ``--kafka/--redis/--mongo``: they win over URLs set in the environment."""
    out: dict[str, Any] = {}
    if args.kafka:
        if "://" in args.kafka:
            out["event_bus_url"] = args.kafka
        else:
            out["kafka_host"], out["kafka_port"] = _host_port(args.kafka, "--kafka", 9092)
            out["event_bus_url"] = None
    if args.redis:
        if "://" in args.redis:
            out["cache_url"] = args.redis
        else:
            out["redis_host"], out["redis_port"] = _host_port(args.redis, "--redis", 6379)
            out["cache_url"] = None
    if args.mongo:
        out["mongo_host"], out["store_url"] = args.mongo, None
    out.update(_db_override(args))
    return out


def _db_override(args: argparse.Namespace) -> dict[str, Any]:
    """The SQLite store of ``--db`` or ``SKALDS_DB`` (``--mongo`` wins over the variable)."""
    if args.db is not None:
        if args.mongo:
            raise ConfigError("--db and --mongo both name the store: give one of them")
        db: str = args.db
    else:
        db = "" if args.mongo else os.environ.get("SKALDS_DB", "")
        if not db:
            return {}  # no --db, SKALDS_DB unset or empty
    if not db.strip():
        raise ConfigError("--db: expected the path of a SQLite file, e.g. skalds.db")
    from skalds.sqlite import url_of_path

    return {"store_url": url_of_path(db)}


def _controller_overrides(args: argparse.Namespace) -> dict[str, Any]:
    given = {
        "host": args.host,
        "port": args.port,
        "mode": args.mode,
        "dispatcher_strategy": args.strategy,
        "log_level": args.log_level,
    }
    return {k: v for k, v in given.items() if v is not None}


def _guarded(run: Any, args: argparse.Namespace) -> int:
    """Run ``run(args)``, turning the expected failures into a message and an exit code."""
    try:
        code: int = run(args)
        return code
    except MissingExtraError as exc:
        print(f"skalds: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"skalds: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"skalds: {exc}", file=sys.stderr)
        return 2
    except SkaldsError as exc:
        print(f"skalds: {exc}", file=sys.stderr)
        return 1


def _controller(args: argparse.Namespace) -> int:
    from skalds.system_controller.main import ControllerSettings, serve

    settings = ControllerSettings(**_controller_overrides(args))
    configure_logging(settings.log_level, settings.controller_id or "controller")
    serve(settings, access_log=args.access_log)
    return 0


def run_controller(args: argparse.Namespace) -> int:
    """``skalds controller``: serve the API (and the mode's parts) until SIGINT/SIGTERM."""
    return _guarded(_controller, args)


def _up(args: argparse.Namespace) -> int:
    # Not through skalds.system_controller.main: that imports the web stack, which
    # `skalds up` loads only after its node forked the fork server (smaller forks).
    import importlib.util

    try:
        import skalds_controller  # noqa: F401 - the package first: a submodule loaded
        from skalds_controller.embedded import EmbeddedSkalds  # earlier would hide its absence
        from skalds_controller.settings import ControllerSettings
    except ImportError as exc:
        raise MissingExtraError("System Controller", "controller") from exc
    if any(importlib.util.find_spec(name) is None for name in ("fastapi", "uvicorn")):
        raise MissingExtraError("System Controller", "controller")

    overrides: dict[str, Any] = {"skald_mode": "node", "mode": "DISPATCHER"}
    if not args.no_log_files:
        overrides["log_split_with_worker_id"] = True
    overrides.update(_controller_overrides(args))
    overrides.update(node_overrides(args))
    overrides.update(_service_overrides(args))
    settings = ControllerSettings(**overrides)
    workers = [import_worker(spec) for spec in args.worker]
    return EmbeddedSkalds(settings, workers=workers, access_log=args.access_log).run()


def run_up(args: argparse.Namespace) -> int:
    """``skalds up``: controller + node in one process until SIGINT/SIGTERM."""
    return _guarded(_up, args)
