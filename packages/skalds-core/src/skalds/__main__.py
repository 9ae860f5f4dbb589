"""``python -m skalds`` runs the ``skalds`` command."""

import sys

from skalds.cli import main

sys.exit(main())
