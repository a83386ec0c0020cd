-- Runs once, when the postgres container initialises its data directory: the Supabase
-- exporter's slow-statement collector reads pg_stat_statements (preloaded by the command line).
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
