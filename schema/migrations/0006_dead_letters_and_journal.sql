-- Alerts that arrived in a notification but cannot be stored (a NUL byte, a fingerprint that is
-- not one, a time outside UTC's range): kept with their reason, so the rest of the batch is
-- stored and nothing is silently lost.
CREATE TABLE IF NOT EXISTS alert_dead_letters (
    id BIGSERIAL PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    alert_index INTEGER NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    -- The alert as received, with unstorable characters replaced by U+FFFD.
    alert JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_alert_dead_letters_received ON alert_dead_letters (received_at DESC);

-- How far each recorder's local journal has been applied: advanced in the same transaction as
-- the writes of each journal record, so a record is applied exactly once even when the recorder
-- stops between the commit and forgetting the record.
CREATE TABLE IF NOT EXISTS recorder_journal_position (
    journal_id TEXT PRIMARY KEY,
    applied_seq BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

ALTER TABLE alert_dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE recorder_journal_position ENABLE ROW LEVEL SECURITY;
