-- When each deployment last became the one serving its environment: its success, or a later
-- promotion (Vercel's promote and Instant Rollback re-promote an older deployment). The summary
-- of what is live, which deploy-aware alerts name, orders by it rather than by build completion.
ALTER TABLE deployment_history ADD COLUMN IF NOT EXISTS went_live_at TIMESTAMPTZ;
UPDATE deployment_history SET went_live_at = COALESCE(completed_at, deployed_at)
WHERE deployment_status = 'success' AND went_live_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_deployments_live ON deployment_history (environment, went_live_at DESC)
WHERE deployment_status = 'success';
