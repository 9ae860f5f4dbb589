"""The ``skalds`` command.

* ``skalds edge|node|single`` run a node; ``skalds workers`` lists the worker classes;
* ``skalds controller`` runs the System Controller; ``skalds up`` runs a controller and
  a node in one process (the embedded default);
* ``skalds task ...`` creates and controls tasks through the controller's REST API.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from skalds.__about__ import __version__
from skalds.cli._controller import add_controller_commands
from skalds.cli._node import add_node_commands
from skalds.cli._task_parser import add_task_command

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skalds",
        description="Run supervised, long-lived task workers. Settings also come from "
        "environment variables (SKALD_ID, KAFKA_HOST, REDIS_HOST, MONGO_HOST, "
        "SKALDS_EVENT_BUS, ...) and a .env file.",
    )
    parser.add_argument("--version", action="version", version=f"skalds {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_node_commands(sub)
    add_controller_commands(sub)
    add_task_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``skalds`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
