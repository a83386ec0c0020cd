-- Backups you can trust (backups/, docs/backups.md): the spec's backup_status gets the columns
-- that let every backup be one row (Supabase's mirrored in place, wsinfra's own dumps with their
-- manifest), and restore_drills records every restore and what it proved.

-- Where a mirrored row came from ('supabase:<ref>:<backup id>'): a refresh updates that row in
-- place instead of adding another. NULL for the backups wsinfra takes itself.
ALTER TABLE backup_status ADD COLUMN IF NOT EXISTS source_key VARCHAR(200);
CREATE UNIQUE INDEX IF NOT EXISTS idx_backups_source_key ON backup_status (source_key)
    WHERE source_key IS NOT NULL;
-- CreateBackupRequest.backup_notes, and who asked (NULL: the schedule).
ALTER TABLE backup_status ADD COLUMN IF NOT EXISTS backup_notes TEXT;
ALTER TABLE backup_status ADD COLUMN IF NOT EXISTS requested_by UUID;
-- A backup asked for through the API is a row in_progress with claimed_at NULL until a backup
-- worker takes it (FOR UPDATE SKIP LOCKED): the request survives a worker that is down.
ALTER TABLE backup_status ADD COLUMN IF NOT EXISTS claimed_at TIMESTAMPTZ;
ALTER TABLE backup_status ADD COLUMN IF NOT EXISTS duration_seconds DOUBLE PRECISION;
-- Our dumps: the manifest's summary (files and checksums, per-table row counts at the dump's
-- snapshot, sampled row checksums, the schema inventory), what a drill verifies against.
ALTER TABLE backup_status ADD COLUMN IF NOT EXISTS manifest JSONB;
-- Retention deleted the files (or Supabase reports the backup REMOVED): the row stays, as history.
ALTER TABLE backup_status ADD COLUMN IF NOT EXISTS removed_at TIMESTAMPTZ;

CREATE INDEX IF NOT EXISTS idx_backups_requested ON backup_status (started_at)
    WHERE backup_status = 'in_progress' AND claimed_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_backups_target_time ON backup_status (backup_target, started_at DESC);

CREATE TABLE IF NOT EXISTS restore_drills (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The backup restored (NULL for a point-in-time drill of a WAL archive without a dump row,
    -- or once retention removed the row: the drill's record outlives it).
    backup_id UUID REFERENCES backup_status (id) ON DELETE SET NULL,
    drill_type VARCHAR(20) NOT NULL CHECK (drill_type IN ('restore', 'point_in_time')),
    backup_target VARCHAR(200) NOT NULL,
    -- Where it was restored: 'private' (a cluster created with initdb and removed afterwards),
    -- 'scratch' (the configured scratch server, database dropped afterwards) or the name of a
    -- configured non-production restore target (a disaster-recovery restore: kept).
    restore_into VARCHAR(100) NOT NULL DEFAULT 'private',
    status VARCHAR(20) NOT NULL DEFAULT 'requested'
        CHECK (status IN ('requested', 'running', 'passed', 'failed')),
    trigger VARCHAR(20) NOT NULL DEFAULT 'schedule' CHECK (trigger IN ('schedule', 'api', 'cli')),
    requested_by UUID,
    -- Point in time drills: the time restored to.
    target_time TIMESTAMPTZ,
    requested_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    started_at TIMESTAMPTZ,
    verified_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    -- Start to verified, and the age of the restored data when the drill started.
    rto_seconds DOUBLE PRECISION,
    rpo_seconds DOUBLE PRECISION,
    -- The restored database's size: with rto_seconds, the throughput a recovery plan estimates from.
    restored_bytes BIGINT,
    -- Each check's outcome ({"check": ..., "ok": ..., "detail": ...}); failed ones say what differed.
    checks JSONB NOT NULL DEFAULT '[]'::jsonb,
    error_message TEXT,
    CHECK (status <> 'passed' OR (verified_at IS NOT NULL AND rto_seconds IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS idx_drills_target_time ON restore_drills (backup_target, requested_at DESC);
CREATE INDEX IF NOT EXISTS idx_drills_requested ON restore_drills (requested_at)
    WHERE status = 'requested';

-- Like backup_status (0003): the Supabase roles get the grants and row-level security decides:
-- admins only.
GRANT SELECT, INSERT, UPDATE, DELETE ON restore_drills TO anon, authenticated, service_role;
ALTER TABLE restore_drills ENABLE ROW LEVEL SECURITY;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE tablename = 'restore_drills' AND policyname = 'Admin access to restore drills'
    ) THEN
        CREATE POLICY "Admin access to restore drills" ON restore_drills
            FOR ALL USING (
                auth.jwt() ->> 'role' = 'service_role' OR
                EXISTS (SELECT 1 FROM user_profiles
                        WHERE user_id = auth.uid()
                        AND role = 'admin')
            );
    END IF;
END
$$;
