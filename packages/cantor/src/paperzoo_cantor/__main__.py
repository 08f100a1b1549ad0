"""``python -m paperzoo_cantor`` is ``paperzoo-cantor``."""

import sys

from paperzoo_cantor.cli import main

sys.exit(main())
