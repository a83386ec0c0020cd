from backups.cli import main

raise SystemExit(main())
