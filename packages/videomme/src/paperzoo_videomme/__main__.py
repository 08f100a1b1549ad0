"""``python -m paperzoo_videomme`` is ``paperzoo-videomme``."""

import sys

from paperzoo_videomme.cli import main

sys.exit(main())
