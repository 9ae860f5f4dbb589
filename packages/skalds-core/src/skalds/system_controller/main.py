"""``python -m skalds.system_controller.main``: run the System Controller (seed path).

Same as ``skalds controller``; settings come from the environment and ``.env``
(``SYSTEM_CONTROLLER_MODE``, ``SYSTEM_CONTROLLER_HOST``, ``SYSTEM_CONTROLLER_PORT``,
``DISPATCHER_STRATEGY``, ``SKALDS_API_TOKEN``, the Kafka/Redis/Mongo settings).
Without the ``skalds-controller`` package, importing this module raises an
``ImportError`` that says what to install (``pip install "skalds[controller]"``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from skalds.errors import MissingExtraError

try:
    from skalds_controller import ControllerSettings, create_app
    from skalds_controller.embedded import EmbeddedSkalds
    from skalds_controller.server import serve
except ImportError as exc:  # the controller package (or FastAPI/uvicorn) is not installed
    raise MissingExtraError("System Controller", "controller") from exc

__all__ = ["ControllerSettings", "EmbeddedSkalds", "create_app", "main", "serve"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the controller until SIGINT/SIGTERM; return the exit code."""
    from skalds.cli._controller import SETTINGS_HELP, add_controller_arguments, run_controller

    parser = argparse.ArgumentParser(
        prog="python -m skalds.system_controller.main",
        description="Run the System Controller (same as: skalds controller). " + SETTINGS_HELP,
    )
    add_controller_arguments(parser)
    return run_controller(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
