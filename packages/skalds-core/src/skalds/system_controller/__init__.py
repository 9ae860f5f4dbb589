"""Seed import path of the System Controller (``python -m skalds.system_controller.main``).

The controller itself lives in the ``skalds-controller`` package (``skalds[controller]``);
:mod:`skalds.system_controller.main` re-exports it and says what to install when it is
missing. Importing this package alone never fails.
"""

__all__: list[str] = []
