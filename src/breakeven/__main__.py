from breakeven._cli import main

raise SystemExit(main())
