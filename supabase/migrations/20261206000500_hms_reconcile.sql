-- hms-webhook reconcile scheduling (README "Reconcile", docs/design.md §6.1): pg_cron calls the function's
-- `POST …/reconcile` route through pg_net every few minutes. The function URL and the webhook
-- secret live in Vault; the job's text names neither. One call sets it up:
--
--   select hms_schedule_reconcile('https://<ref>.supabase.co/functions/v1/hms-webhook', '<secret>');
--
-- and `select hms_reconcile_now();` runs a pass by hand (the answer lands in net._http_response).
-- Applies on a plain PostgreSQL: pg_cron, pg_net and Vault are only looked up when these
-- functions run, and each says which extension is missing. Idempotent.

-- Vault names of what the job reads.
create or replace function hms_private.reconcile_secret_names()
returns table (url_name text, secret_name text, header_name text)
language sql
immutable
set search_path = ''
as $$ select 'hms_reconcile_url', 'hms_reconcile_secret', 'hms_reconcile_header' $$;

-- Rule: a pass needs pg_net (the HTTP call) and Vault (where URL and secret are kept); the
-- schedule needs pg_cron. Each is recognised by the documented function this file calls
-- (pg_cron's cron.schedule, pg_net's net.http_post, Vault's create_secret and decrypted_secrets).
create or replace function hms_private.reconcile_require(p_extensions text[])
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_missing text[];
begin
  select array_agg(e order by e) into v_missing
  from unnest(p_extensions) as e
  where case e
    when 'pg_cron' then to_regprocedure('cron.schedule(text,text,text)') is null
    when 'pg_net' then to_regprocedure('net.http_post(text,jsonb,jsonb,jsonb,integer)') is null
    when 'supabase_vault' then to_regprocedure('vault.create_secret(text,text,text,uuid)') is null
      or to_regclass('vault.decrypted_secrets') is null
    else true
  end;
  if v_missing is not null then
    raise exception 'reconcile scheduling needs the extension(s) %: enable them (Dashboard -> Database -> Extensions) and call again',
      array_to_string(v_missing, ', ')
      using errcode = '55000';
  end if;
end
$$;

-- Keeps one named Vault secret: create it, or update it in place when it exists.
create or replace function hms_private.vault_put(p_name text, p_value text, p_description text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_id uuid;
begin
  select id into v_id from vault.secrets where name = p_name;
  if v_id is null then
    perform vault.create_secret(p_value, p_name, p_description);
  else
    perform vault.update_secret(v_id, p_value, p_name, p_description);
  end if;
end
$$;

-- One pass, now: POST <url>/reconcile with the secret header, body {}. Returns pg_net's request
-- id. The timeout covers a whole pass (the function stops new calls after 60 s).
create or replace function public.hms_reconcile_now()
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_names record;
  v_url text;
  v_secret text;
  v_header text;
begin
  perform hms_private.reconcile_require(array['pg_net', 'supabase_vault']);
  select * into v_names from hms_private.reconcile_secret_names();
  select decrypted_secret into v_url from vault.decrypted_secrets where name = v_names.url_name;
  select decrypted_secret into v_secret from vault.decrypted_secrets where name = v_names.secret_name;
  select decrypted_secret into v_header from vault.decrypted_secrets where name = v_names.header_name;
  if v_url is null or v_secret is null then
    raise exception 'reconcile is not set up: run select hms_schedule_reconcile(<function url>, <webhook secret>)'
      using errcode = '55000';
  end if;
  return net.http_post(
    url := v_url,
    body := '{}'::jsonb,
    headers := jsonb_build_object('Content-Type', 'application/json',
      coalesce(v_header, 'x-webhook-secret'), v_secret),
    timeout_milliseconds := 120000
  );
end
$$;

-- The one setup call: keeps URL, secret and header name in Vault and (re)schedules the job
-- `hms-reconcile` (cron.schedule upserts by name, so calling it again changes the schedule or
-- rotates the secret). Returns the cron job id.
create or replace function public.hms_schedule_reconcile(
  p_function_url text,
  p_webhook_secret text,
  p_schedule text default '*/5 * * * *',
  p_secret_header text default 'x-webhook-secret'
)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_names record;
  v_url text;
begin
  perform hms_private.reconcile_require(array['pg_cron', 'pg_net', 'supabase_vault']);
  -- Rule: the URL is the function's own (http/https), the route is always …/reconcile.
  if p_function_url is null or p_function_url !~ '^https?://[^/?#\s]+(/[^?#\s]*)?$' then
    raise exception 'p_function_url must be the function URL, e.g. https://<ref>.supabase.co/functions/v1/hms-webhook'
      using errcode = '22023';
  end if;
  if coalesce(p_webhook_secret, '') = '' then
    raise exception 'p_webhook_secret must be the function''s HMS_WEBHOOK_SECRET' using errcode = '22023';
  end if;
  v_url := regexp_replace(p_function_url, '/+$', '');
  if v_url !~ '/reconcile$' then
    v_url := v_url || '/reconcile';
  end if;
  select * into v_names from hms_private.reconcile_secret_names();
  perform hms_private.vault_put(v_names.url_name, v_url, 'hms-webhook reconcile: route URL');
  perform hms_private.vault_put(v_names.secret_name, p_webhook_secret,
    'hms-webhook reconcile: HMS_WEBHOOK_SECRET');
  perform hms_private.vault_put(v_names.header_name, lower(p_secret_header),
    'hms-webhook reconcile: secret header name');
  -- The job text only calls the function above: no URL, no secret.
  return cron.schedule('hms-reconcile', p_schedule, 'select public.hms_reconcile_now()');
end
$$;

-- Stops the schedule (the Vault secrets stay; hms_schedule_reconcile reuses them).
create or replace function public.hms_unschedule_reconcile()
returns boolean
language plpgsql
set search_path = ''
as $$
begin
  perform hms_private.reconcile_require(array['pg_cron']);
  return cron.unschedule('hms-reconcile');
end
$$;

-- Operators only: the API roles may not read secrets through these or send requests with them.
revoke all on function hms_private.reconcile_secret_names() from public, anon, authenticated;
revoke all on function hms_private.reconcile_require(text[]) from public, anon, authenticated;
revoke all on function hms_private.vault_put(text, text, text) from public, anon, authenticated;
grant execute on function hms_private.reconcile_secret_names() to service_role;
grant execute on function hms_private.reconcile_require(text[]) to service_role;
grant execute on function hms_private.vault_put(text, text, text) to service_role;
revoke all on function public.hms_reconcile_now() from public, anon, authenticated;
revoke all on function public.hms_schedule_reconcile(text, text, text, text) from public, anon, authenticated;
revoke all on function public.hms_unschedule_reconcile() from public, anon, authenticated;
