from paperzoo_dckd.cli import main

raise SystemExit(main())
