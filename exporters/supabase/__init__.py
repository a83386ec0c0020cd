"""Supabase exporter: PostgreSQL health and slow statements over SQL (this part), and later the
Management API (backups, PITR, service health) and Supabase's own metrics endpoint."""
