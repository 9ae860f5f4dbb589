"""``skalds edge|node|single|workers``: run a node, or list the worker classes it can run.

Worker classes come from installed packages (entry-point group ``skalds.workers``)
and from ``--worker module:Class`` options: the operator names code to import here;
YAML files and events only ever name a registered class.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from pydantic import ValidationError

from skalds.config.skald_config import SkaldConfig, parse_resources
from skalds.errors import SkaldsError
from skalds.utils.logging import configure_logging, logger

__all__ = ["add_node_commands", "add_resources_option", "add_worker_options", "import_worker"]

_MODES = {"edge": "edge", "node": "node", "single": "single_process", "workers": "node"}


def import_worker(spec: str) -> type:
    """The class that ``module:Class`` names.

    Raises:
        SkaldsError: the spec is malformed, the module does not import, or the name
            is missing or not a class.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SkaldsError(f"--worker {spec!r}: expected module:Class, e.g. my_pkg.workers:MyWorker")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SkaldsError(f"--worker {spec!r}: cannot import {module_name}: {exc}") from exc
    try:
        cls = getattr(module, attr)
    except AttributeError:
        raise SkaldsError(f"--worker {spec!r}: {module_name} has no {attr}") from None
    if not isinstance(cls, type):
        raise SkaldsError(f"--worker {spec!r}: {attr} is not a class")
    return cls


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that runs a node: workers, node id, log level."""
    parser.add_argument(
        "-w",
        "--worker",
        action="append",
        default=[],
        metavar="MODULE:CLASS",
        help="register a worker class (repeatable), besides installed ones",
    )
    parser.add_argument(
        "--no-entry-points",
        action="store_true",
        help="do not load worker classes and plugins from installed packages",
    )
    parser.add_argument("--skald-id", help="this node's id (default: SKALD_ID or generated)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default: LOG_LEVEL)")


def _resources(text: str) -> dict[str, float]:
    try:
        return parse_resources(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_resources_option(parser: argparse.ArgumentParser) -> None:
    """``--resources gpu=1,ram_gb=64``: what the node offers to tasks that ask for resources."""
    parser.add_argument(
        "--resources",
        type=_resources,
        metavar="NAME=AMOUNT,...",
        help="resources this node offers to tasks that ask for them, e.g. gpu=1,ram_gb=64 "
        "(default: SKALD_RESOURCES or none)",
    )


def add_node_commands(sub: Any) -> None:
    """Add ``edge``, ``node``, ``single`` and ``workers`` to the ``skalds`` subparsers."""
    edge = sub.add_parser(
        "edge",
        help="run the workers of a YAML file; edits apply live",
        description="Run an edge node: the tasks are the YAML file's "
        "TaskWorkers; editing the file adds, stops or updates "
        "workers without a restart.",
    )
    edge.add_argument("file", help="the workers YAML (TaskWorkers: {id: {className, ...}})")
    add_worker_options(edge)

    node = sub.add_parser(
        "node",
        help="run a node that takes tasks from the event bus",
        description="Run a node: tasks arrive as task.assign events; the "
        "node reads them from the store and runs those whose "
        "executor is this node.",
    )
    add_worker_options(node)
    add_resources_option(node)

    single = sub.add_parser(
        "single",
        help="run the first YAML worker in the foreground",
        description="Run the first worker of the YAML file in this process "
        "with no services. Exit code 0 finished (or stopped by "
        "SIGTERM), 1 failed, 2 bad configuration.",
    )
    single.add_argument("file", help="the workers YAML")
    add_worker_options(single)

    workers = sub.add_parser(
        "workers",
        help="list the worker classes and their schemas",
        description="List the worker classes this machine can run, where "
        "each comes from, and its attachments JSON Schema.",
    )
    workers.add_argument("--json", action="store_true", help="print JSON")
    add_worker_options(workers)
    for parser in (edge, node, single, workers):
        parser.set_defaults(handler=run_node_command)


def node_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings the worker options of ``args`` ask for (only those given)."""
    overrides: dict[str, Any] = {}
    if args.skald_id:
        overrides["skald_id"] = args.skald_id
    if args.log_level:
        overrides["log_level"] = args.log_level
    if args.no_entry_points:
        overrides["load_entry_points"] = False
    if getattr(args, "resources", None) is not None:
        overrides["resources"] = args.resources
    return overrides


def _type_name(prop: dict[str, Any]) -> str:
    """A short type for a JSON Schema property (``integer``, ``string | null``, ``Item``)."""
    if "type" in prop:
        return str(prop["type"])
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    options = prop.get("anyOf") or prop.get("oneOf")
    if options:
        return " | ".join(_type_name(option) for option in options)
    if "enum" in prop:
        return "one of " + ", ".join(map(str, prop["enum"]))
    return "any"


def _list_workers(app: Any, as_json: bool) -> int:
    app._load_plugin_workers()
    described = [w.describe() for w in app.registry]
    if as_json:
        print(json.dumps(described, indent=2))
        return 0
    if not described:
        print(
            "No worker classes found. Install a package that publishes 'skalds.workers' "
            "entry points, or pass --worker module:Class."
        )
        return 0
    for info in described:
        props = info["schema"].get("properties", {})
        required = set(info["schema"].get("required", []))
        print(f"{info['className']}  ({info['source']})")
        print(f"  live updates: {'yes' if info['supportsUpdate'] else 'no'}")
        for name, prop in props.items():
            kind = _type_name(prop)
            flag = "required" if name in required else f"default {prop.get('default')!r}"
            print(f"  {name}: {kind} ({flag})")
    return 0


def run_node_command(args: argparse.Namespace) -> int:
    """Run ``skalds edge|node|single|workers``; return the exit code."""
    overrides = node_overrides(args)
    overrides["skald_mode"] = _MODES[args.command]
    if getattr(args, "file", None):
        overrides["yaml_file"] = args.file
    try:
        config = SkaldConfig(**overrides)
    except ValidationError as exc:
        print(f"skalds: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.skald_id)
    from skalds.node.skald import Skald

    try:
        app = Skald(config)
        for spec in args.worker:
            app.register_task_worker(import_worker(spec))
        if args.command == "workers":
            return _list_workers(app, args.json)
        return app.run()
    except SkaldsError as exc:
        logger.error("%s", exc)
        return 2
