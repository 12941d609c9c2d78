from cpis.cli import main

raise SystemExit(main())
