-- Escalation (api/escalation.py, docs/operator-api.md "Escalation"): a critical alert nobody
-- acknowledged within the configured time is escalated once, to a second-level route in
-- Alertmanager; the escalation ends when the alert is acknowledged or resolved. Both moments are
-- kept on the alert's row, which is what "visible on the row" means.
--
-- The escalation is the system acting, not a caller: the operator API's loop runs it as the role
-- `wsinfra_escalation` created here (SET LOCAL ROLE wsinfra_escalation, as requests use
-- `authenticated`), which may read critical alerts, set the two columns below and append its own
-- audit rows, and nothing else. The API's login role only needs to be a member of it
-- (GRANT wsinfra_escalation TO wsinfra_api).

-- When the escalation alert was posted to Alertmanager (NULL: not escalated). Set once: an alert
-- is escalated at most once.
ALTER TABLE infrastructure_alerts ADD COLUMN IF NOT EXISTS escalated_at TIMESTAMPTZ;
-- When the escalation alert was ended in Alertmanager because the alert was acknowledged or
-- resolved (NULL: still escalated, or never escalated).
ALTER TABLE infrastructure_alerts ADD COLUMN IF NOT EXISTS escalation_ended_at TIMESTAMPTZ;

-- The loop's two questions, asked every check_interval: which criticals wait for escalation, and
-- which escalations are still open. Both sets are small; partial indexes keep them cheap however
-- long the table's history grows.
CREATE INDEX IF NOT EXISTS idx_alerts_escalation_due ON infrastructure_alerts (triggered_at)
    WHERE severity = 'critical' AND resolved_at IS NULL AND acknowledged_at IS NULL
      AND escalated_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_alerts_escalation_open ON infrastructure_alerts (escalated_at)
    WHERE escalated_at IS NOT NULL AND escalation_ended_at IS NULL;

-- The audit log's actor: 'system' joins 'jwt' and 'machine' for what no caller asked for. Its
-- actor_user_id is the nil UUID (no person; the column stays NOT NULL), actor_machine NULL.
ALTER TABLE infrastructure_audit_log DROP CONSTRAINT IF EXISTS infrastructure_audit_log_actor_kind_check;
ALTER TABLE infrastructure_audit_log ADD CONSTRAINT infrastructure_audit_log_actor_kind_check
    CHECK (actor_kind IN ('jwt', 'machine', 'system'));

-- Roles are cluster-wide: created when missing (as 0001 creates Supabase's), and two databases
-- migrated at once must not fail on the other's creation.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wsinfra_escalation') THEN
        BEGIN
            CREATE ROLE wsinfra_escalation NOLOGIN NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO wsinfra_escalation;
-- Exactly the columns the loop reads (to build the escalation alert) and the two it writes.
-- FOR UPDATE needs UPDATE on a column, which the two give.
GRANT SELECT (id, alert_type, severity, service_name, alert_title, alert_rule, triggered_at,
              acknowledged_at, resolved_at, escalated_at, escalation_ended_at),
      UPDATE (escalated_at, escalation_ended_at)
    ON infrastructure_alerts TO wsinfra_escalation;
GRANT INSERT ON infrastructure_audit_log TO wsinfra_escalation;
-- PostgreSQL evaluates every permissive policy of a table, not only the role's own, so the
-- spec's policies (auth.uid(), user_profiles) run for this role too and need these. Without
-- request claims auth.uid() is NULL: user_profiles' own policy shows this role no profile, and
-- the spec's policies admit it to nothing.
GRANT USAGE ON SCHEMA auth TO wsinfra_escalation;
GRANT SELECT (user_id, role) ON user_profiles TO wsinfra_escalation;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE tablename = 'infrastructure_alerts' AND policyname = 'Escalation reads critical alerts'
    ) THEN
        -- Only criticals are ever escalated: the role sees nothing else of the table.
        CREATE POLICY "Escalation reads critical alerts" ON infrastructure_alerts
            FOR SELECT TO wsinfra_escalation USING (severity = 'critical');
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE tablename = 'infrastructure_alerts' AND policyname = 'Escalation marks critical alerts'
    ) THEN
        CREATE POLICY "Escalation marks critical alerts" ON infrastructure_alerts
            FOR UPDATE TO wsinfra_escalation
            USING (severity = 'critical') WITH CHECK (severity = 'critical');
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE tablename = 'infrastructure_audit_log' AND policyname = 'Escalation appends its own audit rows'
    ) THEN
        -- Never in a person's or a machine's name; never another action.
        CREATE POLICY "Escalation appends its own audit rows" ON infrastructure_audit_log
            FOR INSERT TO wsinfra_escalation WITH CHECK (
                actor_kind = 'system'
                AND actor_user_id = '00000000-0000-0000-0000-000000000000'
                AND action IN ('alert.escalate', 'alert.escalation_end')
            );
    END IF;
END
$$;
