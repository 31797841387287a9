-- Gives a plain PostgreSQL (15+) the roles, grants and default privileges that a Supabase
-- database has before any project migration runs, so the migrations and the tests behave here
-- exactly as they do on Supabase. Idempotent: run it as a superuser before the migrations.

do $$
begin
  -- The three API roles PostgREST switches to (from the JWT role claim / API key).
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  -- The login role PostgREST connects as; it may only become one of the three above.
  if not exists (select 1 from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
end
$$;

-- Re-asserted on every run so that a role created elsewhere with other attributes still matches.
alter role anon nologin noinherit;
alter role authenticated nologin noinherit;
alter role service_role nologin noinherit bypassrls;
alter role authenticator login noinherit;

grant anon, authenticated, service_role to authenticator;

grant usage on schema public to anon, authenticated, service_role;

-- Supabase grants the API roles everything on new objects in `public` by default and relies on
-- RLS and explicit revokes; mirroring that here keeps our revokes honest (they are tested).
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;

-- gen_random_uuid() is built in since PostgreSQL 13; fail early with a clear message otherwise.
do $$
begin
  if to_regproc('pg_catalog.gen_random_uuid') is null then
    raise exception 'gen_random_uuid() is missing: PostgreSQL 13 or newer is required';
  end if;
end
$$;
