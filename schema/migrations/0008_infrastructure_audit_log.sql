-- Who changed what through the operator API (api/): one row per write, inserted in the SAME
-- transaction as the write it describes, so a write that fails leaves no audit row and an audit
-- row that cannot be written aborts the write.
--
-- The API writes as the caller (SET LOCAL ROLE authenticated with the caller's JWT claims), so
-- the row must pass row-level security as that caller: any signed-in caller may append a row
-- whose actor is themselves; only admins read the log. Nobody updates or deletes through these
-- roles: the log is append-only (no UPDATE/DELETE grants, no policies for them).

CREATE TABLE IF NOT EXISTS infrastructure_audit_log (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    occurred_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    -- No foreign key to auth.users on purpose: the record of what someone did must outlive the
    -- account (a cascade would erase it, a restriction would block deleting users).
    actor_user_id UUID NOT NULL,
    -- 'jwt': a person's Supabase session; 'machine': a configured machine token (CI, Grafana),
    -- named in actor_machine.
    actor_kind VARCHAR(10) NOT NULL CHECK (actor_kind IN ('jwt', 'machine')),
    actor_machine VARCHAR(64),
    -- What was done, e.g. 'alert.create', 'alert.acknowledge', 'alert.resolve'.
    action VARCHAR(50) NOT NULL,
    target_table VARCHAR(100) NOT NULL,
    target_id VARCHAR(200),
    -- The target as it was before and after (NULL before a creation).
    before JSONB,
    after JSONB,
    -- The request's X-Request-Id (given by the caller or made up by the API), to join with logs.
    request_id VARCHAR(100),
    CHECK ((actor_kind = 'machine') = (actor_machine IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS idx_audit_occurred ON infrastructure_audit_log (occurred_at DESC);
CREATE INDEX IF NOT EXISTS idx_audit_target ON infrastructure_audit_log (target_table, target_id, occurred_at DESC);

-- Like 0003, access goes to the Supabase roles and RLS decides; unlike 0003, only SELECT and
-- INSERT: an audit log nobody can rewrite through the API's roles.
GRANT SELECT, INSERT ON infrastructure_audit_log TO authenticated, service_role;

ALTER TABLE infrastructure_audit_log ENABLE ROW LEVEL SECURITY;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE tablename = 'infrastructure_audit_log' AND policyname = 'Admins read the audit log'
    ) THEN
        CREATE POLICY "Admins read the audit log" ON infrastructure_audit_log
            FOR SELECT USING (
                auth.jwt() ->> 'role' = 'service_role' OR
                EXISTS (SELECT 1 FROM user_profiles
                        WHERE user_id = auth.uid()
                        AND role = 'admin')
            );
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE tablename = 'infrastructure_audit_log' AND policyname = 'Callers append their own audit rows'
    ) THEN
        -- Whether the caller may do the write itself is the target table's policy; this one only
        -- makes sure nobody records an action in someone else's name.
        CREATE POLICY "Callers append their own audit rows" ON infrastructure_audit_log
            FOR INSERT WITH CHECK (actor_user_id = auth.uid());
    END IF;
END
$$;
