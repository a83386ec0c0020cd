-- Planned maintenance windows (the spec's SLA: 4 hours a month, and the `maintenance` status of
-- /health). A window names the alert `service` label values it covers; the operator API
-- (api/maintenance.py) turns each into one Alertmanager silence for its services, exports
-- api_maintenance_window_active so the SLO rules leave its minutes out of the error budget, and
-- refuses overlapping windows and windows over the monthly budget (docs/operator-api.md,
-- "Maintenance windows").
--
-- Windows are never deleted: ending one early (DELETE /maintenance/{id}, or removing it from the
-- windows file) sets ended_at, so what was planned and what was used both stay on record.

CREATE TABLE IF NOT EXISTS maintenance_windows (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Alert `service` label values (the API accepts only its configured maintenance.services,
    -- which also bounds the metric's labels).
    services TEXT[] NOT NULL CHECK (
        cardinality(services) BETWEEN 1 AND 20 AND array_position(services, NULL) IS NULL
    ),
    starts_at TIMESTAMPTZ NOT NULL,
    -- The planned end.
    ends_at TIMESTAMPTZ NOT NULL,
    -- When it was ended early (NULL: runs to ends_at).
    ended_at TIMESTAMPTZ,
    -- The end that counts: the planned one, or the early one (a window ended before it began
    -- covers nothing: effective_ends_at = starts_at). Every check and the metric read this.
    effective_ends_at TIMESTAMPTZ GENERATED ALWAYS AS (
        LEAST(ends_at, GREATEST(starts_at, COALESCE(ended_at, ends_at)))
    ) STORED,
    reason TEXT NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    -- 'api': POST /maintenance; 'config': the API's windows file (its id is derived from the
    -- entry, so a re-sync finds it again).
    source VARCHAR(10) NOT NULL CHECK (source IN ('api', 'config')),
    -- No foreign key to auth.users, as in the audit log: the record outlives the account.
    created_by UUID NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    ended_by UUID,
    -- The Alertmanager silence of the window (NULL only inside the creating transaction).
    silence_id TEXT,
    CHECK (ends_at > starts_at),
    CHECK ((ended_at IS NULL) = (ended_by IS NULL))
);
-- "Which windows are active or still to come": the metric at every scrape, /health, the checks.
CREATE INDEX IF NOT EXISTS idx_maintenance_effective_end
    ON maintenance_windows (effective_ends_at, starts_at);

-- As 0003: access goes to the Supabase roles and the policies decide. No DELETE: windows are
-- ended, never erased.
GRANT SELECT, INSERT, UPDATE ON maintenance_windows TO authenticated, service_role;
ALTER TABLE maintenance_windows ENABLE ROW LEVEL SECURITY;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE tablename = 'maintenance_windows' AND policyname = 'Admins plan maintenance'
    ) THEN
        -- Declaring maintenance silences pages and spends the SLA's allowance: admins only.
        CREATE POLICY "Admins plan maintenance" ON maintenance_windows
            FOR ALL USING (
                auth.jwt() ->> 'role' = 'service_role' OR
                EXISTS (SELECT 1 FROM user_profiles
                        WHERE user_id = auth.uid()
                        AND role = 'admin')
            );
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE tablename = 'maintenance_windows' AND policyname = 'Operations team sees maintenance'
    ) THEN
        -- Whoever the alerts policy admits (0003) must know why alerts are silent.
        CREATE POLICY "Operations team sees maintenance" ON maintenance_windows
            FOR SELECT USING (
                EXISTS (SELECT 1 FROM user_profiles
                        WHERE user_id = auth.uid()
                        AND role IN ('admin', 'developer', 'ops'))
            );
    END IF;
END
$$;

-- The services with a window active now: what /health reports as `maintenance` and what the
-- API's /metrics exports. Both run with the API's own login role, not as a caller (a scrape
-- and a health probe have no user), and that role has no row the policies above show; so this
-- one read runs as the function's owner. It returns only service names that are in
-- maintenance at this moment (no reasons, no people), which the health endpoint publishes
-- anyway.
CREATE OR REPLACE FUNCTION public.wsinfra_services_in_maintenance()
    RETURNS SETOF TEXT
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = ''
    AS $f$
    SELECT DISTINCT s
    FROM public.maintenance_windows AS w
    CROSS JOIN LATERAL unnest(w.services) AS s
    WHERE w.effective_ends_at > now() AND w.starts_at <= now()
$f$;
REVOKE ALL ON FUNCTION public.wsinfra_services_in_maintenance() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.wsinfra_services_in_maintenance() TO authenticated, service_role;
