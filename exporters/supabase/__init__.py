"""Supabase exporter: config + vendor adapters + pure collectors, on the shared exporter app.

- SQL (`databases:`): `scrape.DatabaseScraper` runs each collector's query (`sql.query_*`,
  plain immutable rows) over a common.postgres pool into a `scrape.DatabaseSnapshot`;
  `scrape.render` and `sql.render_*` turn snapshots into metric families.
- Management API (`management:`): `management.ManagementSource` (common.upstream client,
  common.refresh loop) keeps an immutable `ManagementSnapshot`; `management.collect` renders
  the scrape's `ManagementView`.
- Supabase's own metrics endpoint (`project_metrics:`): /probe and /sd (project_metrics.py).
`app.SupabaseExporter` ties them to common.exporter; `app.collect` is the whole pure collector.
"""
