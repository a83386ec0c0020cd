from exporters.supabase.cli import main

raise SystemExit(main())
