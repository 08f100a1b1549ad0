from paperzoo_vega.cli import main

raise SystemExit(main())
