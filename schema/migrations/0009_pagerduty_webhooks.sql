-- Acknowledgements and resolutions made in PagerDuty reach infrastructure_alerts through the
-- operator API's PagerDuty v3 webhook (api/pagerduty.py, docs/operator-api.md). The API writes as
-- its PagerDuty machine user (a machine_tokens entry) under row-level security, like every other
-- API write, so what that user needs beyond the alerts table is granted here, always to exactly
-- the roles the spec's alerts policy admits (0003): whoever may change alerts may record
-- PagerDuty's events about them and find which alerts an incident is about.

-- Events already processed. PagerDuty delivers at least once; an event id is claimed here in the
-- same transaction as the writes it causes, so a redelivery finds it and writes nothing, and a
-- transaction that fails leaves no claim (PagerDuty's retry then applies the event).
CREATE TABLE IF NOT EXISTS pagerduty_webhook_events (
    -- event.id of the v3 payload (the docs: "The unique id of the event").
    event_id VARCHAR(100) PRIMARY KEY,
    event_type VARCHAR(100) NOT NULL,
    -- event.data.id: the PagerDuty incident.
    incident_id VARCHAR(100),
    -- event.data.incident_key: what the incident was matched on.
    incident_key VARCHAR(255),
    occurred_at TIMESTAMPTZ,
    received_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    -- How many active alert rows the event applied to (0: nothing matched).
    matched INTEGER
);
CREATE INDEX IF NOT EXISTS idx_pagerduty_events_received ON pagerduty_webhook_events (received_at DESC);

GRANT SELECT, INSERT, UPDATE ON pagerduty_webhook_events TO authenticated, service_role;
ALTER TABLE pagerduty_webhook_events ENABLE ROW LEVEL SECURITY;

-- "Which notifications carried this alert": a containment query on the alerts array.
CREATE INDEX IF NOT EXISTS idx_am_notifications_alerts
    ON alertmanager_notifications USING gin ((payload -> 'alerts') jsonb_path_ops);

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE tablename = 'pagerduty_webhook_events' AND policyname = 'Operations team records PagerDuty events'
    ) THEN
        CREATE POLICY "Operations team records PagerDuty events" ON pagerduty_webhook_events
            FOR ALL USING (
                EXISTS (SELECT 1 FROM user_profiles
                        WHERE user_id = auth.uid()
                        AND role IN ('admin', 'developer', 'ops'))
            );
    END IF;
END
$$;

-- The alert rows of a PagerDuty incident: the API recomputes PagerDuty's dedup key from the
-- group keys of the notifications that carried each unresolved alert (the recorder's raw log,
-- 0004). This is the one read that runs as the function's owner rather than under the caller's
-- row-level security, for a measured reason: under RLS PostgreSQL may not use the GIN index for
-- the jsonb containment (its operator is not leakproof), and every active alert then scans the
-- whole notification log (measured: about 50 ms per active alert at 50,000 notifications,
-- against under 2 ms through the index). It answers only a caller the alerts policy admits (the same roles), returns
-- only what such a caller may read of the alerts anyway, and writes nothing. Notifications are
-- matched by fingerprint (the first part of infrastructure_alerts.alert_id, recorder/
-- payloads.py), with no time bound: the same labels land in the same group until the routing
-- changes, and a bound on received_at made the planner scan that range instead of the index.
CREATE OR REPLACE FUNCTION public.wsinfra_active_alert_groups()
    RETURNS TABLE (alert_row UUID, group_key TEXT, labels JSONB)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = ''
    AS $f$
    SELECT a.id, g.group_key, a.alert_rule -> 'labels'
    FROM public.infrastructure_alerts AS a
    CROSS JOIN LATERAL (
        SELECT DISTINCT n.group_key
        FROM public.alertmanager_notifications AS n
        WHERE (n.payload -> 'alerts') @> jsonb_build_array(
                  jsonb_build_object('fingerprint', split_part(a.alert_id, ':', 1)))
    ) AS g
    WHERE a.resolved_at IS NULL
      AND a.alert_id IS NOT NULL
      AND EXISTS (SELECT 1 FROM public.user_profiles
                  WHERE user_id = auth.uid()
                  AND role IN ('admin', 'developer', 'ops'))
$f$;
REVOKE ALL ON FUNCTION public.wsinfra_active_alert_groups() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.wsinfra_active_alert_groups() TO authenticated, service_role;

-- A PagerDuty responder is named in our tables by their user id when an account with their
-- email exists. auth.users is not readable by `authenticated` (on Supabase it belongs to the
-- auth service), so the lookup is this one function, running as its owner: it answers only a
-- caller the alerts policy admits, only for one exact email (case-insensitive), and only when
-- exactly one account has it (NULL otherwise). plpgsql, so that creating it does not need
-- auth.users to have an email column yet (Supabase's has one; so has 0001's).
CREATE OR REPLACE FUNCTION public.wsinfra_user_id_by_email(p_email TEXT) RETURNS UUID
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = ''
    AS $f$
DECLARE
    found UUID[];
BEGIN
    IF p_email IS NULL OR p_email = '' OR NOT EXISTS (
        SELECT 1 FROM public.user_profiles
        WHERE user_id = auth.uid() AND role IN ('admin', 'developer', 'ops')
    ) THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(u.id) INTO found
    FROM (SELECT id FROM auth.users WHERE lower(email) = lower(p_email) LIMIT 2) AS u;
    IF cardinality(found) = 1 THEN
        RETURN found[1];
    END IF;
    RETURN NULL;
END
$f$;
REVOKE ALL ON FUNCTION public.wsinfra_user_id_by_email(TEXT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.wsinfra_user_id_by_email(TEXT) TO authenticated, service_role;
