"""Property test over the OpenAPI schema: thousands of generated requests, never a 5xx.

Requests are drawn from the API's own ``/api/openapi.json``: valid values from each
parameter's and body's JSON Schema (:func:`from_schema` below), mixed with wrong types,
junk strings and arbitrary JSON. Every answer must be below 500 and every error must
use the error model. The controller runs in CONTROLLER mode (nothing is dispatched,
so no generated task ever starts a process); the endless SSE streams and
``logs?follow=true`` are tested on their own elsewhere.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skalds.model.task import Task, TaskLifecycleStatus
from skalds_controller import ControllerSettings, create_app

S = TaskLifecycleStatus

pytestmark = pytest.mark.slow

EXAMPLES = 3000
SKIPPED = {"/api/events/skalds", "/api/events/tasks", "/api/events/status"}
KNOWN_TASKS = ["created", "finished", "failed"]
SEEDED_STATUSES = [S.CREATED, S.FINISHED, S.FAILED]
ERROR_KEYS = {"error", "detail", "code", "timestamp"}

JUNK_TEXT = st.sampled_from(
    [
        "",
        " ",
        "-1",
        "0",
        "1e309",
        "NaN",
        "null",
        "true",
        "[]",
        "{}",
        "../../etc/passwd",
        "%00",
        "a/b",
        ".*",
        "$where",
        "é",
        "x" * 300,
    ]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


RETRY_SCHEMA = {
    "type": "object",
    "properties": {
        "maxAttempts": {"type": "integer", "minimum": 1, "maximum": 100},
        "backoffSeconds": {"type": "number", "minimum": 0, "maximum": 86400},
    },
}


def inline_refs(node: Any, components: dict[str, Any]) -> Any:
    """The schema with every ``#/components/schemas/X`` reference replaced by X."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            return inline_refs(components[ref.rsplit("/", 1)[1]], components)
        return {k: inline_refs(v, components) for k, v in node.items()}
    if isinstance(node, list):
        return [inline_refs(v, components) for v in node]
    return node


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that fit ``schema``, for the JSON Schema subset FastAPI writes."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([from_schema(s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        low, high = schema.get("minLength", 0), schema.get("maxLength", 50)
        return st.text(min_size=low, max_size=min(high, low + 50))
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {})), max_size=4)
    if kind == "object" or "properties" in schema:
        return _object(schema)
    return JSON


def _object(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    props = schema.get("properties", {})
    required = set(schema.get("required", ()))
    extra = schema.get("additionalProperties", not props)
    fixed = st.fixed_dictionaries(
        {k: from_schema(v) for k, v in props.items() if k in required},
        optional={k: from_schema(v) for k, v in props.items() if k not in required},
    )
    if not extra:
        return fixed
    values = from_schema(extra) if isinstance(extra, dict) else JSON
    more = st.dictionaries(st.text(max_size=10), values, max_size=3)
    return st.tuples(more, fixed).map(lambda pair: {**pair[0], **pair[1]})


def operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    components = spec.get("components", {}).get("schemas", {})
    out = []
    for path, methods in spec["paths"].items():
        if path in SKIPPED:
            continue
        for method, op in methods.items():
            params = [
                {**p, "schema": inline_refs(p["schema"], components)}
                for p in op.get("parameters", [])
                if p["name"] != "follow"
            ]
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            out.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "params": params,
                    "body": inline_refs(body["schema"], components) if body else None,
                }
            )
    return out


def as_query_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def value_for(param: dict[str, Any], known: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    """A valid value, a wrong one, or (for ids in the path) an id that exists."""
    choices = [from_schema(param["schema"]), JUNK_TEXT, st.integers(), st.text(max_size=30)]
    if param["in"] == "path":
        for word, ids in known.items():
            if word in param["name"]:
                choices += [st.sampled_from(ids)] * 2
    return st.one_of(choices)


def body_for(schema: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    attachments = st.fixed_dictionaries(
        {"traceFile": st.text(max_size=20)},
        optional={
            "fixFrame": st.one_of(st.integers(), JSON),
            "label": st.text(max_size=10),
            "mainSeconds": st.floats(),
            "x": JSON,
        },
    )
    probe = st.fixed_dictionaries(
        {"className": st.just("ProbeWorker"), "attachments": attachments},
        optional={
            "id": st.one_of(st.sampled_from(KNOWN_TASKS), st.text(max_size=12)),
            "priority": st.integers(-2, 12),
            "retryPolicy": st.one_of(JSON, from_schema(RETRY_SCHEMA)),
            "deadline": st.integers(),
            "dependencies": st.lists(st.text(max_size=8), max_size=3),
            "resources": st.dictionaries(st.text(max_size=5), st.floats(), max_size=2),
        },
    )
    raw = st.binary(max_size=40).map(lambda b: ("raw", b))
    if schema is None:
        return st.one_of(st.none(), JSON, raw)
    return st.one_of(from_schema(schema), probe, JSON, raw)


def seed(store) -> None:
    """(Re)create the tasks that generated paths name, whatever earlier requests did."""
    for task_id, status in zip(KNOWN_TASKS, SEEDED_STATUSES, strict=True):
        if store.get_task(task_id) is None:
            store.create_task(Task(id=task_id, class_name="ProbeWorker"))
            store.update_task(task_id, {"lifecycle_status": status})


@pytest.fixture
def fuzz_client(skalds_backends, node):
    settings_ = ControllerSettings(mode="CONTROLLER", load_entry_points=False)
    with TestClient(create_app(settings_, backends=skalds_backends)) as client:
        yield client


def test_no_generated_request_gets_a_server_error(fuzz_client, skalds_backends, node):
    ops = operations(fuzz_client.get("/api/openapi.json").json())
    known = {"task": KNOWN_TASKS, "skald": [node.skald_id]}
    sent: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        seed(skalds_backends.store)
        op = data.draw(st.sampled_from(ops), label="operation")
        path, query = op["path"], {}
        for param in op["params"]:
            if param["in"] == "path":
                value = as_query_value(data.draw(value_for(param, known), label=param["name"]))
                path = path.replace("{" + param["name"] + "}", quote(value or "", safe=""))
            elif data.draw(st.booleans(), label=f"send {param['name']}"):
                value = as_query_value(data.draw(value_for(param, known), label=param["name"]))
                if value is not None:
                    query[param["name"]] = value
        query.update(
            data.draw(st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=2))
        )
        kwargs: dict[str, Any] = {"params": query}
        if op["body"] is not None or data.draw(st.booleans(), label="stray body"):
            body = data.draw(body_for(op["body"]), label="body")
            if isinstance(body, tuple):
                kwargs["content"] = body[1]
                kwargs["headers"] = {"content-type": "application/json"}
            elif body is not None:  # NaN and Infinity are sent as Python writes them
                kwargs["content"] = json.dumps(body)
                kwargs["headers"] = {"content-type": "application/json"}
        res = fuzz_client.request(op["method"], path, **kwargs)
        sent[f"{op['method']} {op['path']}"] += 1
        assert res.status_code < 500, (
            f"{op['method']} {path} {kwargs} -> {res.status_code} {res.text}"
        )
        assert "Traceback" not in res.text
        if res.status_code >= 400:
            assert set(res.json()) == ERROR_KEYS, res.text

    check()
    assert sum(sent.values()) >= 2000
    names = {f"{op['method']} {op['path']}" for op in ops}
    assert set(sent) == names, f"operations never tried: {names - set(sent)}"
    assert min(sent.values()) >= 30, sent
