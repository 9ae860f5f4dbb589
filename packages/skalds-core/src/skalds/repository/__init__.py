"""Task persistence helpers (seed import path ``skalds.repository.repository``)."""
