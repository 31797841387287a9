-- The extensions a Supabase project enables, for the local stack's database (after
-- supabase_roles.sql, before the migrations). Idempotent; run as a superuser.
--
-- pg_cron is the real extension (Debian's postgresql-15-cron; postgres.ts preloads it and points
-- cron.database_name at this database). Supabase Vault and pg_net cannot be installed here, so
-- they are stand-ins with the documented SQL interface and nothing behind it:
--   Vault (https://supabase.com/docs/guides/database/vault, https://github.com/supabase/vault):
--     vault.create_secret(new_secret, new_name, new_description, new_key_id) returns uuid,
--     vault.update_secret(secret_id, new_secret, new_name, new_description, new_key_id),
--     the table vault.secrets and the view vault.decrypted_secrets (decrypted_secret). The real
--     one stores the secret encrypted; this one keeps it as given (a throwaway database).
--   pg_net (https://supabase.com/docs/guides/database/extensions/pg_net):
--     net.http_post(url, body, params, headers, timeout_milliseconds) returns bigint, the request
--     id. The real one sends the request after the transaction commits; this one only queues it
--     in net.http_request_queue (the real queue's name), where tests read it. Nothing is sent.

create extension if not exists pg_cron;

create schema if not exists vault;
create table if not exists vault.secrets (
  id uuid primary key default gen_random_uuid(),
  name text unique,
  description text not null default '',
  secret text not null,
  key_id uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create or replace view vault.decrypted_secrets as
  select s.id, s.name, s.description, s.secret, s.secret as decrypted_secret, s.key_id,
    s.created_at, s.updated_at
  from vault.secrets as s;
create or replace function vault.create_secret(new_secret text, new_name text default null,
  new_description text default '', new_key_id uuid default null)
returns uuid
language sql
set search_path = ''
as $$
  insert into vault.secrets (secret, name, description, key_id)
  values (new_secret, new_name, coalesce(new_description, ''), new_key_id)
  returning id
$$;
create or replace function vault.update_secret(secret_id uuid, new_secret text default null,
  new_name text default null, new_description text default null, new_key_id uuid default null)
returns void
language sql
set search_path = ''
as $$
  update vault.secrets
  set secret = coalesce(new_secret, secret), name = coalesce(new_name, name),
    description = coalesce(new_description, description), key_id = coalesce(new_key_id, key_id),
    updated_at = now()
  where id = secret_id
$$;

create schema if not exists net;
create table if not exists net.http_request_queue (
  id bigserial primary key,
  method text not null,
  url text not null,
  headers jsonb not null,
  body bytea,
  timeout_milliseconds integer not null
);
create or replace function net.http_post(url text, body jsonb default '{}'::jsonb,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds integer default 2000)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_id bigint;
begin
  -- pg_net appends params to the URL, encoded; nothing here passes any, so none are accepted.
  if params is not null and params <> '{}'::jsonb then
    raise exception 'the pg_net stand-in takes no params (put them in the URL)';
  end if;
  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values ('POST', url, headers, pg_catalog.convert_to(body::text, 'UTF8'), timeout_milliseconds)
  returning id into v_id;
  return v_id;
end
$$;
