from exporters.billing.cli import main

raise SystemExit(main())
