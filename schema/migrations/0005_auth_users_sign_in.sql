-- Supabase's auth.users records each user's last sign-in; the active-user counts (cost per
-- active user) read it. Our compatibility table for a plain PostgreSQL (0001) gains the same
-- column. Supabase's own auth.users is never touched: it is recognised by its instance_id
-- column, which our compatibility table does not have.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = 'auth' AND table_name = 'users'
          AND column_name IN ('last_sign_in_at', 'instance_id')
    ) THEN
        ALTER TABLE auth.users ADD COLUMN last_sign_in_at TIMESTAMPTZ;
    END IF;
END
$$;
