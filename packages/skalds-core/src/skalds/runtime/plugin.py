"""The local-process runtime as a default plugin (``local://``)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from skalds.hookspecs import hookimpl

if TYPE_CHECKING:
    from skalds.config.skald_config import SkaldConfig
    from skalds.ports.runtime import WorkerListener, WorkerRuntime
    from skalds.worker.registry import WorkerRegistry


@hookimpl(trylast=True)
def skalds_make_worker_runtime(
    url: str, config: SkaldConfig, registry: WorkerRegistry, listener: WorkerListener
) -> WorkerRuntime | None:
    """Answer for ``local://``: each task a local process forked by a fork server."""
    if urlsplit(url).scheme != "local":
        return None
    from skalds.runtime.local import LocalRuntime

    return LocalRuntime(config, registry, listener)
