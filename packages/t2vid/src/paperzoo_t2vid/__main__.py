"""``python -m paperzoo_t2vid`` is ``paperzoo-t2vid``."""

import sys

from paperzoo_t2vid.cli import main

sys.exit(main())
