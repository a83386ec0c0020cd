from dashboards.build import main

raise SystemExit(main())
