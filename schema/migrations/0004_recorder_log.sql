-- The recorder's own bookkeeping, beside the spec's tables.

-- Every Alertmanager notification as received: the raw record behind infrastructure_alerts.
CREATE TABLE IF NOT EXISTS alertmanager_notifications (
    id BIGSERIAL PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    status TEXT NOT NULL,
    truncated_alerts INTEGER NOT NULL DEFAULT 0,
    alert_count INTEGER NOT NULL,
    payload JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_am_notifications_received ON alertmanager_notifications (received_at DESC);

-- Provider delivery ids already processed: a replayed delivery is acknowledged, not re-applied.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    provider TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    event TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (provider, delivery_id)
);

ALTER TABLE alertmanager_notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
