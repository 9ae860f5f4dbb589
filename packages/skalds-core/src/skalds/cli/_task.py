"""The ``skalds task`` commands: each one API call (or a few) and a readable answer.

Each handler takes the API client and the parsed arguments and returns the exit code;
:mod:`skalds.cli._task_parser` wires them to the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from skalds.cli._api import ApiClient
from skalds.cli._attachments import UsageError, apply_sets, load_attachments_file
from skalds.cli._table import age, render_table
from skalds.cli._wait import Until, wait_for_task

__all__ = [
    "Handler",
    "control",
    "create",
    "list_tasks",
    "logs",
    "show",
    "update",
]

Handler = Callable[[ApiClient, argparse.Namespace], int]


def _out(text: str = "") -> None:
    print(text, flush=True)


def _show_json(value: Any) -> None:
    _out(json.dumps(value, indent=2))


# -- the commands ---------------------------------------------------------------------


def create(client: ApiClient, args: argparse.Namespace) -> int:
    base = load_attachments_file(args.file) if args.file else {}
    body: dict[str, Any] = {
        "className": args.class_name,
        "attachments": apply_sets(base, args.set),
        "priority": args.priority,
        "isPersistent": args.persistent,
    }
    optional = {"id": args.id, "name": args.name, "executor": args.executor}
    body.update({k: v for k, v in optional.items() if v is not None})
    if args.depends_on:
        body["dependencies"] = args.depends_on
    if args.max_attempts:
        body["retryPolicy"] = {"maxAttempts": args.max_attempts}
    task = client.request("POST", "/api/tasks", json_body=body)
    if args.json and not args.wait:
        _show_json(task)
        return 0
    progress = sys.stderr if args.json else sys.stdout  # --json keeps stdout parseable
    where = f" on {task['executor']}" if task.get("executor") else ""
    print(f"created task {task['id']} ({task['className']}{where})", file=progress, flush=True)
    if not args.wait:
        return 0
    until: Until = args.until or ("running" if task.get("isPersistent") else "finished")
    code = wait_for_task(client, task["id"], until, progress, timeout=args.timeout)
    if args.json:
        _show_json(client.request("GET", f"/api/tasks/{task['id']}"))
    return code


def list_tasks(client: ApiClient, args: argparse.Namespace) -> int:
    filters = {
        "lifecycleStatus": args.status,
        "className": args.class_name,
        "executor": args.executor,
        "id": args.id_prefix,
    }
    params = {"page": args.page, "pageSize": args.page_size, **filters}
    page = client.request("GET", "/api/tasks", params=params)
    if args.json:
        _show_json(page)
        return 0
    items = page.get("items", [])
    if not items:
        _out("no tasks match" if any(filters.values()) else "no tasks")
        return 0
    rows = [
        [
            t.get("id"),
            t.get("className"),
            t.get("lifecycleStatus"),
            t.get("executor") or "-",
            t.get("priority", 0),
            age(t.get("updateDateTime")),
        ]
        for t in items
    ]
    _out(render_table(["ID", "CLASS", "STATUS", "EXECUTOR", "PRIO", "UPDATED"], rows))
    total, size = int(page.get("total", len(items))), int(page.get("pageSize", args.page_size))
    pages = max(1, -(-total // size))
    _out(f"page {page.get('page', args.page)} of {pages}, {total} task(s)")
    return 0


def show(client: ApiClient, args: argparse.Namespace) -> int:
    task = client.request("GET", f"/api/tasks/{args.task_id}")
    if args.json:
        _show_json(task)
        return 0
    fields = [
        ("id", task.get("id")),
        ("class", task.get("className")),
        ("status", task.get("lifecycleStatus")),
        ("executor", task.get("executor") or "-"),
        ("name", task.get("name")),
        ("priority", task.get("priority")),
        ("persistent", "yes" if task.get("isPersistent") else "no"),
        ("attempts", task.get("attempts")),
        ("run", task.get("incarnation") or None),
        ("attachments", _versions(task)),
        ("dependencies", ", ".join(task.get("dependencies") or []) or None),
        ("created", age(task.get("createDateTime"))),
        ("updated", age(task.get("updateDateTime"))),
    ]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        if value not in (None, ""):
            _out(f"{key.ljust(width)}  {value}")
    _out("attachments:")
    for line in json.dumps(task.get("attachments") or {}, indent=2).splitlines():
        _out(f"  {line}")
    if task.get("errorMessage"):
        _out("error:")
        for line in str(task["errorMessage"]).rstrip().splitlines():
            _out(f"  {line}")
    return 0


def _versions(task: dict[str, Any]) -> str:
    """``version 3, worker applied 2``: the stored attachments and the running worker's."""
    stored = int(task.get("attachmentsVersion") or 0)
    applied = int(task.get("appliedAttachmentsVersion") or 0)
    text = f"version {stored}"
    if task.get("lifecycleStatus") in ("Running", "Paused"):
        text += ", worker applied " + ("the same" if applied == stored else str(applied))
    return text


def update(client: ApiClient, args: argparse.Namespace) -> int:
    if not args.file and not args.set:
        raise UsageError("nothing to update: give --set key=value and/or --file FILE")
    if args.file:
        base = load_attachments_file(args.file)
    else:
        base = client.request("GET", f"/api/tasks/{args.task_id}").get("attachments") or {}
    body = {"attachments": apply_sets(base, args.set)}
    result = client.request("PUT", f"/api/tasks/{args.task_id}/attachments", json_body=body)
    if args.json:
        _show_json(result)
        return 0
    task = result.get("task", {})
    version = task.get("attachmentsVersion")
    if result.get("updateReceived"):
        _out(
            f"updated task {args.task_id} (attachments version {version}); "
            "the running worker applied them"
        )
    elif result.get("updateHeld"):
        _out(
            f"updated task {args.task_id} (attachments version {version}); it is paused: "
            "the worker applies them when it resumes"
        )
    elif result.get("updateSent"):
        _out(f"updated task {args.task_id}; the new attachments were sent to the running worker")
        if result.get("updateError"):
            print(f"skalds: warning: {result['updateError']}", file=sys.stderr)
    elif task.get("lifecycleStatus") in ("Running", "Paused"):
        _out(
            f"updated task {args.task_id} (attachments version {version}); the event to its "
            "node was not sent: the node picks them up at its next reconcile"
        )
    else:
        status = task.get("lifecycleStatus", "not running")
        _out(f"updated task {args.task_id} ({status}); it uses them when it next starts")
    return 0


def _settle(client: ApiClient, task_id: str, expect: str, seconds: float = 3.0) -> str:
    """The task's status once it is ``expect`` (nodes apply pause/resume a moment later)."""
    deadline = time.monotonic() + seconds
    while True:
        status = str(client.request("GET", f"/api/tasks/{task_id}").get("lifecycleStatus"))
        if status == expect or time.monotonic() >= deadline:
            return status
        time.sleep(0.05)


def control(
    method: str, path: str, done: str, body: Any = None, expect: str | None = None
) -> Handler:
    def run(client: ApiClient, args: argparse.Namespace) -> int:
        task = client.request(method, f"/api/tasks/{args.task_id}{path}", json_body=body)
        status = task.get("lifecycleStatus") if isinstance(task, dict) else None
        if expect is not None:
            status = _settle(client, args.task_id, expect)
        if getattr(args, "json", False) and task is not None:
            _show_json(client.request("GET", f"/api/tasks/{args.task_id}"))
        elif expect is not None and status != expect:
            _out(f"{done} requested for task {args.task_id}; it is still {status}")
        else:
            _out(f"{done} task {args.task_id}" + (f" (now {status})" if status else ""))
        return 0

    return run


def _log_line(raw: str) -> str | None:
    """A log line from a followed stream (plain lines or Server-Sent Events)."""
    if raw.startswith(("event:", "id:", "retry:", ":")) or not raw:
        return None
    text = raw[5:].lstrip() if raw.startswith("data:") else raw
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return text
        if isinstance(data, dict) and "line" in data:
            return str(data["line"])
    return text


def logs(client: ApiClient, args: argparse.Namespace) -> int:
    path = f"/api/tasks/{args.task_id}/logs"
    params: dict[str, Any] = {"tail": args.tail}
    if args.follow:
        params["follow"] = True
        for raw in client.stream_lines(path, params):
            line = _log_line(raw)
            if line is not None:
                _out(line)
        return 0
    logs = client.request("GET", path, params=params)
    lines: list[Any]
    if isinstance(logs, dict):
        lines = list(logs.get("lines") or logs.get("items") or [])
    elif isinstance(logs, list):
        lines = logs
    else:
        lines = str(logs or "").splitlines()
    for line in lines:
        _out(str(line))
    return 0
