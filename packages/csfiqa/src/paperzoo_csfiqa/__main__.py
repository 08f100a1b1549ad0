from paperzoo_csfiqa.cli import main

raise SystemExit(main())
