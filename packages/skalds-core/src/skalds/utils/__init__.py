"""Small helpers (seed import path ``skalds.utils.logging``)."""
