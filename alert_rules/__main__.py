from alert_rules.build import main

raise SystemExit(main())
