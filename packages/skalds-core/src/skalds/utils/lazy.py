"""Package attributes imported on first use (PEP 562 module ``__getattr__``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, module_of: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``module_of[name]`` when ``name`` is first used.

    The adapters re-export their classes this way, so importing a package (as
    finding its plugin does) does not import its client library: a node forks its
    fork server before it builds its backends, and every task process is a fork of
    that server, so what it has not imported no task pays for.

    Typical use, in a package's ``__init__``::

        __getattr__ = lazy_attributes(__name__, {"RedisCache": "skalds_redis.cache"})
    """

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
