"""Build the plugin manager and the backends it makes; nothing here is global.

:func:`make_plugin_manager` loads the default plugins and every ``skalds.plugins``
entry point; :func:`make_backends` asks the hooks for the event bus, cache and store
that a configuration names.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pluggy

from skalds import hookspecs
from skalds.errors import UnknownBackendError
from skalds.hookspecs import PROJECT_NAME

if TYPE_CHECKING:
    from skalds.config.skald_config import SkaldConfig
    from skalds.ports.cache import Cache
    from skalds.ports.event_bus import EventBus
    from skalds.ports.store import Store

__all__ = [
    "DEFAULT_PLUGINS",
    "PLUGINS_GROUP",
    "Backends",
    "make_backends",
    "make_plugin_manager",
    "redact_url",
    "unreachable",
]

PLUGINS_GROUP = "skalds.plugins"
DEFAULT_PLUGINS: tuple[str, ...] = (
    "skalds.memory.plugin",
    "skalds.sqlite.plugin",
    "skalds.runtime.plugin",
)

# Which extra provides which URL scheme, for the "pip install" hint.
_EXTRA_FOR_SCHEME = {
    "kafka": "kafka",
    "redis": "redis",
    "rediss": "redis",
    "mongodb": "mongo",
    "mongodb+srv": "mongo",
}


def make_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """Return a new plugin manager with the default plugins and installed ones.

    Args:
        load_entry_points: also load plugins published under ``skalds.plugins``.

    Raises:
        pluggy.PluginValidationError: a plugin implements a hook that does not exist.
    """
    import importlib

    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        module = importlib.import_module(name)
        # A default plugin module either holds hookimpls itself or offers
        # make_plugin() when its hooks need per-manager state.
        factory = getattr(module, "make_plugin", None)
        pm.register(factory() if factory is not None else module, name=name)
    if load_entry_points:
        pm.load_setuptools_entrypoints(PLUGINS_GROUP)
    pm.check_pending()
    return pm


@dataclass
class Backends:
    """The three connected backends of one node or controller."""

    event_bus: EventBus
    cache: Cache
    store: Store

    def close(self) -> None:
        """Close all three (errors are ignored: this runs on the way out)."""
        for backend in (self.event_bus, self.cache, self.store):
            with contextlib.suppress(Exception):
                backend.close()


def _missing(kind: str, url: str) -> UnknownBackendError:
    scheme = urlsplit(url).scheme
    extra = _EXTRA_FOR_SCHEME.get(scheme)
    hint = f'; install it with: pip install "skalds[{extra}]"' if extra else ""
    return UnknownBackendError(f"no installed plugin provides {kind} for {scheme}://{hint}")


def redact_url(url: str) -> str:
    """Return ``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def make_backends(pm: pluggy.PluginManager, config: SkaldConfig) -> Backends:
    """Ask the hooks for the event bus, cache and store that ``config`` names.

    Raises:
        UnknownBackendError: no plugin answers for a URL scheme (names the extra).
        BackendUnavailableError: an adapter could not reach its server (those built
            before it are closed again).
    """
    built: list[Any] = []
    try:
        bus_url = config.resolved_event_bus_url()
        bus = pm.hook.skalds_make_event_bus(url=bus_url, config=config)
        if bus is None:
            raise _missing("an event bus", bus_url)
        built.append(bus)
        cache_url = config.resolved_cache_url()
        cache = pm.hook.skalds_make_cache(url=cache_url, config=config)
        if cache is None:
            raise _missing("a cache", cache_url)
        built.append(cache)
        store_url = config.resolved_store_url()
        store = pm.hook.skalds_make_store(url=store_url, config=config)
        if store is None:
            raise _missing("a store", store_url)
    except Exception:
        for backend in built:
            with contextlib.suppress(Exception):
                backend.close()
        raise
    return Backends(bus, cache, store)


def unreachable(backends: Backends, config: SkaldConfig) -> list[str]:
    """Return "<port> at <url>" for each backend that does not answer its ping."""
    down = []
    for name, backend, url in (
        ("event bus", backends.event_bus, config.resolved_event_bus_url()),
        ("cache", backends.cache, config.resolved_cache_url()),
        ("store", backends.store, config.resolved_store_url()),
    ):
        try:
            ok = backend.ping()
        except Exception:
            ok = False
        if not ok:
            down.append(f"{name} at {redact_url(url)}")
    return down
