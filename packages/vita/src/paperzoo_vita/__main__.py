from paperzoo_vita.cli import main

raise SystemExit(main())
