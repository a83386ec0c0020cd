"""The spec's PostgreSQL schema: its migrations, the migrator, and the typed writes into its tables.

Every writer of the spec's tables (the recorder, the billing exporter, later the operator API and
the backup jobs) goes through this package, so the SQL for a table lives in one place.
"""
