"""Skalds: supervised, long-lived task processes across many machines.

The names most code needs::

    from skalds import Skald, Skalds, SkaldConfig, hookimpl
    from skalds.worker.baseclass import BaseTaskWorker, run_main_handler
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from skalds.__about__ import __version__
from skalds.errors import SkaldsError
from skalds.hookspecs import hookimpl

if TYPE_CHECKING:
    from skalds.config.skald_config import SkaldConfig
    from skalds.node.skald import Skald, Skalds

__all__ = ["Skald", "SkaldConfig", "Skalds", "SkaldsError", "__version__", "hookimpl"]


def __getattr__(name: str) -> Any:
    # The node pulls in the whole runtime; import it only when asked for, so that
    # `import skalds.model.task` in a script stays light.
    if name in ("Skald", "Skalds"):
        from skalds.node import skald

        return getattr(skald, name)
    if name == "SkaldConfig":
        from skalds.config.skald_config import SkaldConfig

        return SkaldConfig
    raise AttributeError(f"module 'skalds' has no attribute {name!r}")
