from exporters.uptime.cli import main

raise SystemExit(main())
