"""Messages between a node, its fork server and its workers: small JSON objects.

Worker pipes carry length-prefixed frames (``multiprocessing.connection``); the
fork-server control socket is a ``SOCK_SEQPACKET`` pair, one message per packet,
which also carries the worker's socket as a passed file descriptor.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_CONTROL_PACKET", "decode", "encode"]

MAX_CONTROL_PACKET = 64 * 1024


def encode(kind: str, **fields: Any) -> bytes:
    """Return one message of type ``kind`` as bytes."""
    return json.dumps({"t": kind, **fields}, separators=(",", ":")).encode()


def decode(data: bytes) -> dict[str, Any]:
    """Parse one message; raise ``ValueError`` when it is not a JSON object with a type."""
    msg = json.loads(data)
    if not isinstance(msg, dict) or "t" not in msg:
        raise ValueError(f"not a skalds runtime message: {data[:80]!r}")
    return msg
