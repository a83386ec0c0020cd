-- The spec's row-level-security policies, as written there. Supabase grants table access to
-- anon/authenticated and lets RLS decide; the same grants are made here so that the policies,
-- not missing grants, are what the tests prove.

GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    infrastructure_metrics, deployment_history, infrastructure_alerts, cost_tracking, backup_status, scaling_events
    TO anon, authenticated, service_role;

ALTER TABLE infrastructure_metrics ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Admin access to infrastructure metrics" ON infrastructure_metrics
    FOR ALL USING (
        auth.jwt() ->> 'role' = 'service_role' OR
        EXISTS (SELECT 1 FROM user_profiles
                WHERE user_id = auth.uid()
                AND role = 'admin')
    );

ALTER TABLE deployment_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Admin full access to deployments" ON deployment_history
    FOR ALL USING (
        EXISTS (SELECT 1 FROM user_profiles
                WHERE user_id = auth.uid()
                AND role IN ('admin', 'developer'))
    );
CREATE POLICY "Users see own deployments" ON deployment_history
    FOR SELECT USING (deployed_by = auth.uid());

ALTER TABLE infrastructure_alerts ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Operations team access to alerts" ON infrastructure_alerts
    FOR ALL USING (
        EXISTS (SELECT 1 FROM user_profiles
                WHERE user_id = auth.uid()
                AND role IN ('admin', 'developer', 'ops'))
    );

ALTER TABLE cost_tracking ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Finance team access to costs" ON cost_tracking
    FOR ALL USING (
        EXISTS (SELECT 1 FROM user_profiles
                WHERE user_id = auth.uid()
                AND role IN ('admin', 'finance'))
    );

ALTER TABLE backup_status ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Admin access to backup status" ON backup_status
    FOR ALL USING (
        auth.jwt() ->> 'role' = 'service_role' OR
        EXISTS (SELECT 1 FROM user_profiles
                WHERE user_id = auth.uid()
                AND role = 'admin')
    );

ALTER TABLE scaling_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Admin access to scaling events" ON scaling_events
    FOR ALL USING (
        auth.jwt() ->> 'role' = 'service_role' OR
        EXISTS (SELECT 1 FROM user_profiles
                WHERE user_id = auth.uid()
                AND role = 'admin')
    );
