from paperzoo_flashsloth.cli import main

raise SystemExit(main())
