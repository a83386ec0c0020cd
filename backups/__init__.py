"""The backup worker: logical backups of the configured databases, restore drills that verify
them and measure RTO and RPO, point-in-time drills, retention, and the `backup_` metrics
(docs/backups.md)."""
