from admire.cli import main

raise SystemExit(main())
