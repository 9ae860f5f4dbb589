"""Read the workers YAML file: ``TaskWorkers: {<id>: {className, attachments, isPersistent}}``.

Errors name the file, the line and the worker. A broken file as a whole raises
:class:`~skalds.errors.YamlConfigError`; a single broken worker entry is reported
and skipped so the others still run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from skalds.errors import YamlConfigError

__all__ = ["YamlFile", "YamlWorker", "parse_yaml_text", "read_yaml_file"]

_KNOWN_KEYS = {"className", "attachments", "isPersistent"}
MAX_YAML_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class YamlWorker:
    """One worker entry of the YAML file."""

    task_id: str
    class_name: str
    attachments: dict[str, Any]
    is_persistent: bool
    line: int


@dataclass
class YamlFile:
    """The usable workers of a YAML file and the problems found in the others."""

    path: str
    workers: list[YamlWorker] = field(default_factory=list)
    errors: list[YamlConfigError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_yaml_file(path: str | Path) -> YamlFile:
    """Read and parse ``path``.

    Raises:
        YamlConfigError: the file is missing, unreadable, not YAML, or has no TaskWorkers.
    """
    p = Path(path)
    try:
        if p.stat().st_size > MAX_YAML_BYTES:
            raise YamlConfigError(f"file is larger than {MAX_YAML_BYTES} bytes", path=str(p))
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlConfigError("file not found", path=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlConfigError(f"cannot read file: {exc}", path=str(p)) from None
    return parse_yaml_text(text, str(p))


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def parse_yaml_text(text: str, path: str = "<yaml>") -> YamlFile:
    """Parse YAML text; see :func:`read_yaml_file`."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlConfigError(f"invalid YAML: {problem}", path=path, line=line) from None
    except yaml.YAMLError as exc:
        raise YamlConfigError(f"invalid YAML: {exc}", path=path) from None
    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        raise YamlConfigError("expected a mapping with a 'TaskWorkers' key", path=path, line=1)
    if "TaskWorkers" not in data:
        raise YamlConfigError("no 'TaskWorkers' key", path=path, line=1)
    section = data["TaskWorkers"]
    section_node = next(v for k, v in root.value if k.value == "TaskWorkers")
    result = YamlFile(path)
    if section is None:
        return result
    if not isinstance(section, dict) or not isinstance(section_node, yaml.MappingNode):
        raise YamlConfigError(
            "'TaskWorkers' must map task ids to workers", path=path, line=_line(section_node)
        )
    for key_node, _value_node in section_node.value:
        task_id = str(key_node.value)
        entry = section.get(key_node.value, section.get(task_id))
        try:
            result.workers.append(_worker(task_id, entry, path, _line(key_node), result))
        except YamlConfigError as exc:
            result.errors.append(exc)
    return result


def _worker(task_id: str, entry: Any, path: str, line: int, result: YamlFile) -> YamlWorker:
    def fail(message: str) -> YamlConfigError:
        return YamlConfigError(message, path=path, line=line, worker=task_id)

    if not task_id.strip():
        raise fail("task id must not be empty")
    if not isinstance(entry, dict):
        raise fail("expected a mapping with className and attachments")
    class_name = entry.get("className")
    if not isinstance(class_name, str) or not class_name:
        raise fail("missing 'className' (the registered worker class to run)")
    attachments = entry.get("attachments") or {}
    if not isinstance(attachments, dict):
        raise fail("'attachments' must be a mapping of parameters")
    persistent = entry.get("isPersistent", False)
    if not isinstance(persistent, bool):
        raise fail(f"'isPersistent' must be true or false, not {persistent!r}")
    unknown = sorted(set(entry) - _KNOWN_KEYS)
    if unknown:
        result.warnings.append(
            f"{path}:{line}: worker {task_id!r}: ignoring unknown keys {unknown}"
        )
    return YamlWorker(task_id, class_name, dict(attachments), persistent, line)
