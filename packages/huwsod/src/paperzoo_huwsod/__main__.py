import sys

from paperzoo_huwsod.cli import main

sys.exit(main())
