-- Reconciliation (api/reconcile.py, docs/operator-api.md "Reconciliation with Alertmanager"):
-- Alertmanager sends no resolved notification for an alert that ends while silenced
-- (prometheus/alertmanager#226), and an acknowledgement is a silence, so an acknowledged alert
-- that ends before its silence does would stay open here forever. The operator API's loop
-- compares the open rows with what Alertmanager holds and resolves those it no longer has (and
-- posts again a manual incident it lost in a restart).
--
-- It is the system acting, as the role `wsinfra_reconciler` created here (SET LOCAL ROLE, as the
-- escalation loop does with 0010's role): it may read the alerts' identifying columns, set
-- resolved_at on open ones, and append its own audit rows; nothing else. The API's login role
-- only needs to be a member of it (GRANT wsinfra_reconciler TO wsinfra_api).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wsinfra_reconciler') THEN
        BEGIN
            CREATE ROLE wsinfra_reconciler NOLOGIN NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO wsinfra_reconciler;
-- What the loop reads (labels and annotations live in alert_rule) and the one column it writes.
GRANT SELECT (id, alert_type, severity, service_name, alert_rule, triggered_at, acknowledged_at,
              resolved_at),
      UPDATE (resolved_at)
    ON infrastructure_alerts TO wsinfra_reconciler;
GRANT INSERT ON infrastructure_audit_log TO wsinfra_reconciler;
-- The spec's policies run for every role (see 0010): they need these to evaluate to "no".
GRANT USAGE ON SCHEMA auth TO wsinfra_reconciler;
GRANT SELECT (user_id, role) ON user_profiles TO wsinfra_reconciler;

-- The loop's question, asked every interval: the open rows that came from Alertmanager.
CREATE INDEX IF NOT EXISTS idx_alerts_open_triggered ON infrastructure_alerts (triggered_at)
    WHERE resolved_at IS NULL;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE tablename = 'infrastructure_alerts' AND policyname = 'Reconciler reads alerts'
    ) THEN
        -- Every row, not only open ones: PostgreSQL checks an UPDATE's new row against the
        -- SELECT policies too, and the row it resolves is no longer open. The column grants
        -- above bound what it reads.
        CREATE POLICY "Reconciler reads alerts" ON infrastructure_alerts
            FOR SELECT TO wsinfra_reconciler USING (true);
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE tablename = 'infrastructure_alerts' AND policyname = 'Reconciler resolves open alerts'
    ) THEN
        -- Only an open row, only to resolved: it can never reopen or rewrite history.
        CREATE POLICY "Reconciler resolves open alerts" ON infrastructure_alerts
            FOR UPDATE TO wsinfra_reconciler
            USING (resolved_at IS NULL) WITH CHECK (resolved_at IS NOT NULL);
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE tablename = 'infrastructure_audit_log' AND policyname = 'Reconciler appends its own audit rows'
    ) THEN
        CREATE POLICY "Reconciler appends its own audit rows" ON infrastructure_audit_log
            FOR INSERT TO wsinfra_reconciler WITH CHECK (
                actor_kind = 'system'
                AND actor_user_id = '00000000-0000-0000-0000-000000000000'
                AND action IN ('alert.reconcile_resolve', 'alert.reconcile_repost')
            );
    END IF;
END
$$;
