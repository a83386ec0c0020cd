-- Supabase compatibility for a plain PostgreSQL. On Supabase every object below already exists
-- (schema auth, auth.users, auth.uid(), auth.jwt(), the anon/authenticated/service_role roles)
-- and is left untouched: each is created only when missing, never replaced.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE IF NOT EXISTS auth.users (
    id UUID PRIMARY KEY,
    email TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

DO $$
BEGIN
    -- Supabase reads the request's JWT claims from this setting (PostgREST sets it per request).
    IF to_regprocedure('auth.jwt()') IS NULL THEN
        CREATE FUNCTION auth.jwt() RETURNS JSONB
            LANGUAGE sql STABLE
            AS $f$ SELECT COALESCE(NULLIF(current_setting('request.jwt.claims', true), ''), '{}')::JSONB $f$;
    END IF;
    IF to_regprocedure('auth.uid()') IS NULL THEN
        CREATE FUNCTION auth.uid() RETURNS UUID
            LANGUAGE sql STABLE
            AS $f$ SELECT NULLIF(auth.jwt() ->> 'sub', '')::UUID $f$;
    END IF;
    IF to_regprocedure('auth.role()') IS NULL THEN
        CREATE FUNCTION auth.role() RETURNS TEXT
            LANGUAGE sql STABLE
            AS $f$ SELECT auth.jwt() ->> 'role' $f$;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;

-- The table the spec's policies consult for a user's role. Created (with its own RLS: a user
-- reads only their own profile, which is all the policies' EXISTS sub-queries need) only where
-- the project does not have one already.
DO $$
BEGIN
    IF to_regclass('public.user_profiles') IS NULL THEN
        CREATE TABLE public.user_profiles (
            user_id UUID PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
            role VARCHAR(20) NOT NULL CHECK (role IN ('admin', 'developer', 'ops', 'finance', 'user')),
            created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
        );
        ALTER TABLE public.user_profiles ENABLE ROW LEVEL SECURITY;
        CREATE POLICY "Users read their own profile" ON public.user_profiles
            FOR SELECT USING (user_id = auth.uid());
        GRANT SELECT ON public.user_profiles TO anon, authenticated, service_role;
    END IF;
END
$$;
