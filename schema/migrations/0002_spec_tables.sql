-- The spec's six tables (WS-296 "Database Design"), in valid PostgreSQL: its inline INDEX
-- clauses are CREATE INDEX statements here, partial indexes kept.

CREATE TABLE IF NOT EXISTS infrastructure_metrics (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    service_name VARCHAR(100) NOT NULL,
    region VARCHAR(50) NOT NULL,
    metric_type VARCHAR(100) NOT NULL,
    metric_value DECIMAL NOT NULL,
    metric_unit VARCHAR(20) NOT NULL,
    measurement_time TIMESTAMPTZ DEFAULT NOW() NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_infra_metrics_service_time ON infrastructure_metrics (service_name, measurement_time DESC);
CREATE INDEX IF NOT EXISTS idx_infra_metrics_type_time ON infrastructure_metrics (metric_type, measurement_time DESC);

CREATE TABLE IF NOT EXISTS deployment_history (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    deployment_id VARCHAR(200) NOT NULL UNIQUE,
    environment VARCHAR(20) NOT NULL CHECK (environment IN ('production', 'staging', 'preview')),
    git_branch VARCHAR(200) NOT NULL,
    git_commit_hash VARCHAR(40) NOT NULL,
    deployed_by UUID REFERENCES auth.users (id),
    deployment_status VARCHAR(20) DEFAULT 'in_progress' CHECK (deployment_status IN ('in_progress', 'success', 'failed', 'rolled_back')),
    build_duration_ms INTEGER,
    deployment_url VARCHAR(500),
    error_message TEXT,
    deployed_at TIMESTAMPTZ DEFAULT NOW() NOT NULL,
    completed_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS idx_deployments_env_time ON deployment_history (environment, deployed_at DESC);
CREATE INDEX IF NOT EXISTS idx_deployments_status_time ON deployment_history (deployment_status, deployed_at DESC);

CREATE TABLE IF NOT EXISTS infrastructure_alerts (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    alert_id VARCHAR(200) UNIQUE,
    alert_type VARCHAR(100) NOT NULL,
    severity VARCHAR(20) NOT NULL CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    service_name VARCHAR(100) NOT NULL,
    region VARCHAR(50),
    alert_title VARCHAR(500) NOT NULL,
    alert_description TEXT NOT NULL,
    metric_threshold DECIMAL,
    current_metric_value DECIMAL,
    alert_rule JSONB,
    notification_sent BOOLEAN DEFAULT false,
    acknowledged_by UUID REFERENCES auth.users (id),
    resolved_by UUID REFERENCES auth.users (id),
    resolution_notes TEXT,
    triggered_at TIMESTAMPTZ DEFAULT NOW() NOT NULL,
    acknowledged_at TIMESTAMPTZ,
    resolved_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS idx_alerts_severity_time ON infrastructure_alerts (severity, triggered_at DESC);
CREATE INDEX IF NOT EXISTS idx_alerts_service_unresolved ON infrastructure_alerts (service_name, triggered_at DESC) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_alerts_active ON infrastructure_alerts (severity, triggered_at DESC) WHERE resolved_at IS NULL;

CREATE TABLE IF NOT EXISTS cost_tracking (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    service_provider VARCHAR(50) NOT NULL,
    service_category VARCHAR(50) NOT NULL,
    billing_period_start DATE NOT NULL,
    billing_period_end DATE NOT NULL,
    usage_quantity DECIMAL NOT NULL,
    usage_unit VARCHAR(50) NOT NULL,
    cost_usd DECIMAL NOT NULL,
    projected_monthly_cost DECIMAL,
    usage_tier VARCHAR(50),
    cost_notes TEXT,
    recorded_at TIMESTAMPTZ DEFAULT NOW() NOT NULL,
    UNIQUE (service_provider, service_category, billing_period_start, billing_period_end)
);
CREATE INDEX IF NOT EXISTS idx_cost_provider_period ON cost_tracking (service_provider, billing_period_start DESC);
CREATE INDEX IF NOT EXISTS idx_cost_category_period ON cost_tracking (service_category, billing_period_start DESC);

CREATE OR REPLACE FUNCTION wsinfra_add_days(ts TIMESTAMPTZ, days INTEGER) RETURNS TIMESTAMPTZ
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ts + days * INTERVAL '24 hours' $$;

CREATE TABLE IF NOT EXISTS backup_status (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    backup_type VARCHAR(50) NOT NULL CHECK (backup_type IN ('database', 'files', 'configuration')),
    backup_target VARCHAR(200) NOT NULL,
    backup_method VARCHAR(50) NOT NULL,
    backup_size_bytes BIGINT,
    backup_location VARCHAR(500) NOT NULL,
    backup_retention_days INTEGER DEFAULT 30,
    backup_status VARCHAR(20) DEFAULT 'in_progress' CHECK (backup_status IN ('in_progress', 'completed', 'failed')),
    error_message TEXT,
    started_at TIMESTAMPTZ DEFAULT NOW() NOT NULL,
    completed_at TIMESTAMPTZ,
    -- The spec writes completed_at + (days || ' days')::INTERVAL, which PostgreSQL refuses in a
    -- generated column (not immutable: text casts and calendar days depend on settings). The
    -- helper below adds whole 24-hour days, which is immutable, and means the same for retention.
    expires_at TIMESTAMPTZ GENERATED ALWAYS AS (wsinfra_add_days(completed_at, backup_retention_days)) STORED
);
CREATE INDEX IF NOT EXISTS idx_backups_type_time ON backup_status (backup_type, started_at DESC);
CREATE INDEX IF NOT EXISTS idx_backups_status_time ON backup_status (backup_status, started_at DESC);
CREATE INDEX IF NOT EXISTS idx_backups_expiring ON backup_status (expires_at ASC) WHERE backup_status = 'completed';

CREATE TABLE IF NOT EXISTS scaling_events (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    event_type VARCHAR(50) NOT NULL CHECK (event_type IN ('scale_up', 'scale_down', 'configuration_change')),
    service_name VARCHAR(100) NOT NULL,
    trigger_reason VARCHAR(200) NOT NULL,
    previous_configuration JSONB,
    new_configuration JSONB,
    triggered_by VARCHAR(50) DEFAULT 'automatic',
    scaling_duration_ms INTEGER,
    success BOOLEAN DEFAULT true,
    error_message TEXT,
    cost_impact_usd DECIMAL,
    performance_impact_description TEXT,
    triggered_at TIMESTAMPTZ DEFAULT NOW() NOT NULL,
    completed_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS idx_scaling_service_time ON scaling_events (service_name, triggered_at DESC);
CREATE INDEX IF NOT EXISTS idx_scaling_type_time ON scaling_events (event_type, triggered_at DESC);
