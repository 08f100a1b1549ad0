from paperzoo_dynamic_llava.cli import main

raise SystemExit(main())
