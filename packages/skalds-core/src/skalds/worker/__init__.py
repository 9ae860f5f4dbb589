"""TaskWorker API (seed import path ``skalds.worker.baseclass``) and its registry."""
