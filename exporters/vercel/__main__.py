from exporters.vercel.cli import main

raise SystemExit(main())
