"""A worker module that imports only in the test process, never in a fresh interpreter.

Stands for a worker module that depends on something the main script set up before
importing it, which a fresh fork server does not have.
"""

from __future__ import annotations

import builtins

from tests.fork_server_workers import SeeingWorker

if not getattr(builtins, "_skalds_test_allow_guarded_import", False):
    raise RuntimeError("this module imports only in the test process")


class GuardedWorker(SeeingWorker):
    """The same worker, in a module a fresh interpreter cannot import."""
