"""Attachments from the command line: ``--set key=value`` and ``--file attachments.json``.

A value is JSON when it parses as JSON (``10``, ``true``, ``null``, ``[1, 2]``,
``{"a": 1}``, ``"quoted"``) and a plain string otherwise (``rtsp://cam/1``), so the
common cases need no quoting. Dotted keys build nested objects: ``a.b=1`` → ``{"a": {"b": 1}}``.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from skalds.errors import SkaldsError

__all__ = ["UsageError", "apply_sets", "load_attachments_file", "parse_value"]


class UsageError(SkaldsError):
    """The command line asks for something malformed (exit code 2)."""


def _no_constants(name: str) -> Any:
    raise ValueError(name)  # NaN/Infinity are not JSON: keep them as strings


def parse_value(text: str) -> Any:
    """``text`` as JSON when it is JSON, else the string itself."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except ValueError:
        return text


def _assign(target: dict[str, Any], dotted: str, value: Any, option: str) -> None:
    parts = dotted.split(".")
    if any(not p.strip() for p in parts):
        raise UsageError(f"--set {option!r}: empty key; expected key=value or a.b=value")
    node = target
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise UsageError(
                f"--set {option!r}: {where} is {json.dumps(child)}, not an object, "
                "so it has no field to set"
            )
        node = child
    node[parts[-1]] = value


def apply_sets(base: Mapping[str, Any], sets: Iterable[str]) -> dict[str, Any]:
    """A copy of ``base`` with each ``key=value`` of ``sets`` applied, in order.

    Raises:
        UsageError: an option has no ``=``, an empty key, or sets a field inside a
            value that is not an object.
    """
    result = copy.deepcopy(dict(base))
    for option in sets:
        key, sep, raw = option.partition("=")
        if not sep:
            raise UsageError(f"--set {option!r}: expected key=value, e.g. --set fixFrame=10")
        _assign(result, key.strip(), parse_value(raw), option)
    return result


def load_attachments_file(path: str) -> dict[str, Any]:
    """The attachments object of a JSON (or YAML) file; ``-`` reads standard input.

    Raises:
        UsageError: the file cannot be read, does not parse, or is not an object.
    """
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--file {path}: cannot read it: {exc.strerror or exc}") from None
    try:
        if Path(path).suffix.lower() in (".yml", ".yaml"):
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise UsageError(f"--file {path}: not valid JSON/YAML: {exc}") from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise UsageError(f"--file {path}: expected an object of attachment fields, got {kind}")
    return data
