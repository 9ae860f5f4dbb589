"""``skalds task ...``: create, list, inspect and control tasks through the controller's API.

Every command talks to ``--url`` (default ``SKALDS_API_URL`` or http://127.0.0.1:8000)
with ``--token`` (default ``SKALDS_API_TOKEN``). Exit codes: 0 done, 1 the API refused
(its error code is shown), 2 bad command line, 3 the API cannot be reached or failed,
4 ``--wait``: the task ended Failed or Cancelled, 5 ``--wait``: timed out.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from skalds.cli import _task
from skalds.cli._api import (
    DEFAULT_URL,
    EXIT_REJECTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    ApiClient,
    ApiRejectedError,
    ApiUnreachableError,
)
from skalds.cli._attachments import UsageError
from skalds.cli._task import Handler
from skalds.errors import MissingExtraError

__all__ = ["add_task_command", "run_task_command"]

_ABOUT = """Create, list, inspect and control tasks through the controller's REST API
(--url, default SKALDS_API_URL or http://127.0.0.1:8000; --token, default
SKALDS_API_TOKEN)."""
_EXIT_CODES = """exit codes:
  0  done
  1  the API refused the request (its error code and message are shown)
  2  bad command line
  3  the API cannot be reached, or it failed
  4  --wait: the task ended Failed or Cancelled
  5  --wait: still not there after --timeout"""
_STATUSES = ["Created", "Assigning", "Running", "Paused", "Finished", "Failed", "Cancelled"]


def _show_error(exc: ApiRejectedError) -> None:
    print(f"skalds: {exc.code}: {exc.error}", file=sys.stderr)
    detail = exc.detail
    if isinstance(detail, list):
        for item in detail:
            if isinstance(item, dict) and "field" in item:
                print(f"  {item['field']}: {item.get('message', '')}", file=sys.stderr)
            else:
                print(f"  {item}", file=sys.stderr)
    elif isinstance(detail, dict):
        for key, value in detail.items():
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            print(f"  {key}: {shown}", file=sys.stderr)
    elif detail:
        print(f"  {detail}", file=sys.stderr)
    if isinstance(detail, list) and any("is not of type 'string'" in str(d) for d in detail):
        print(
            "  hint: a --set value that parses as JSON (1, true) is sent as a number or "
            "boolean; quote it for a string: --set 'key=\"1\"'",
            file=sys.stderr,
        )
    if exc.status == 401:
        print("  pass --token TOKEN or set SKALDS_API_TOKEN", file=sys.stderr)


def run_task_command(args: argparse.Namespace) -> int:
    """Run one ``skalds task`` command; return its exit code (see the module docstring)."""
    try:
        with ApiClient(args.url, args.token, args.http_timeout) as client:
            code: int = args.task_handler(client, args)
            return code
    except UsageError as exc:
        print(f"skalds: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MissingExtraError as exc:
        print(f"skalds: {exc} (or just: pip install httpx)", file=sys.stderr)
        return EXIT_USAGE
    except ApiRejectedError as exc:
        _show_error(exc)
        return EXIT_REJECTED
    except ApiUnreachableError as exc:
        print(f"skalds: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        print("\nstopped waiting; the task goes on (skalds task show ID)", file=sys.stderr)
        return 130


def _api_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("API")
    group.add_argument(
        "--url",
        default=os.environ.get("SKALDS_API_URL", DEFAULT_URL),
        help="the controller's address (default: SKALDS_API_URL or %(default)s)",
    )
    group.add_argument(
        "--token",
        default=os.environ.get("SKALDS_API_TOKEN"),
        help="API token (default: SKALDS_API_TOKEN)",
    )
    group.add_argument(
        "--http-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long one request may take (default: %(default)s)",
    )


def _attachment_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an attachment field (repeatable); VALUE is JSON when it parses "
        "(10, true, [1,2]), else a string; a.b=1 sets a nested field",
    )
    parser.add_argument(
        "--file",
        metavar="FILE",
        help="attachments from a JSON or YAML file ('-' = stdin); --set applies on top",
    )


def _add(sub: Any, name: str, handler: Handler, help_text: str, **kw: Any) -> Any:
    parser = sub.add_parser(
        name,
        help=help_text,
        description=kw.pop("description", help_text[:1].upper() + help_text[1:] + "."),
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(task_handler=handler, handler=run_task_command)
    _api_options(parser)
    return parser


def _add_create(sub: Any) -> None:
    p = _add(
        sub,
        "create",
        _task.create,
        "create a task",
        description="Create a task of a worker class. Attachments are checked against "
        "the class's JSON Schema by the API. Without --executor the dispatcher picks a node.",
    )
    p.add_argument("class_name", metavar="CLASS", help="the worker className")
    _attachment_options(p)
    p.add_argument("--id", help="the task id (default: generated)")
    p.add_argument("--name", help="a name for people")
    p.add_argument("--priority", type=int, default=0, help="0-10, higher first (default: 0)")
    p.add_argument("--executor", metavar="NODE", help="run it on this node (no dispatcher)")
    p.add_argument("--persistent", action="store_true", help="restart it whenever it ends")
    p.add_argument("--depends-on", action="append", metavar="ID", help="wait for this task")
    p.add_argument("--max-attempts", type=int, metavar="N", help="tries in all on failure")
    p.add_argument(
        "--wait",
        action="store_true",
        help="follow it until it has finished (persistent tasks: until it runs)",
    )
    p.add_argument("--until", choices=["running", "finished"], help="with --wait: what to wait for")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="with --wait: give up after")
    p.add_argument("--json", action="store_true", help="print the task as JSON")


def _add_list(sub: Any) -> None:
    p = _add(sub, "list", _task.list_tasks, "list tasks (highest priority first)")
    p.add_argument("--status", choices=_STATUSES, help="only tasks in this status")
    p.add_argument("--class", dest="class_name", metavar="CLASS", help="only this className")
    p.add_argument("--executor", metavar="NODE", help="only tasks of this node")
    p.add_argument("--id-prefix", metavar="PREFIX", help="ids starting with this (not a regex)")
    p.add_argument("--page", type=int, default=1, help="page number (default: 1)")
    p.add_argument("--page-size", type=int, default=20, help="1-100 (default: 20)")
    p.add_argument("--json", action="store_true", help="print the API's JSON")


def add_task_command(sub: Any) -> None:
    """Add ``task`` and its subcommands to the ``skalds`` subparsers."""
    task = sub.add_parser(
        "task",
        help="create and control tasks through the controller's API",
        description=_ABOUT,
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tasks = task.add_subparsers(dest="task_command", required=True, metavar="COMMAND")
    _add_create(tasks)
    _add_list(tasks)
    p = _add(tasks, "show", _task.show, "show one task")
    p.add_argument("task_id", metavar="ID", help="the task id")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p = _add(
        tasks,
        "update",
        _task.update,
        "change a task's attachments (a running worker gets them live)",
        description="Change a task's attachments: --set changes fields of the current "
        "attachments; --file replaces them (then --set applies on top).",
    )
    p.add_argument("task_id", metavar="ID", help="the task id")
    _attachment_options(p)
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    cancelled, created = {"lifecycleStatus": "Cancelled"}, {"lifecycleStatus": "Created"}
    for name, handler, text in (
        ("cancel", _task.control("PUT", "/status", "cancelled", cancelled), "stop a task"),
        (
            "pause",
            _task.control("POST", "/pause", "paused", None, "Paused"),
            "pause a running task",
        ),
        (
            "resume",
            _task.control("POST", "/resume", "resumed", None, "Running"),
            "resume a paused task",
        ),
        (
            "requeue",
            _task.control("PUT", "/status", "re-queued", created),
            "run a finished, failed or cancelled task again",
        ),
        (
            "delete",
            _task.control("DELETE", "", "deleted"),
            "delete a task (it is cancelled first if it runs)",
        ),
    ):
        p = _add(tasks, name, handler, text)
        p.add_argument("task_id", metavar="ID", help="the task id")
        p.add_argument("--json", action="store_true", help="print the API's JSON")
    p = _add(tasks, "logs", _task.logs, "print a task's log lines")
    p.add_argument("task_id", metavar="ID", help="the task id")
    p.add_argument("--tail", type=int, default=100, help="last N lines (default: 100)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
