-- hms-webhook reconcile scheduling (docs/reconcile.md, docs/design.md §6.1): pg_cron calls the function's
-- `POST …/reconcile` route through pg_net every few minutes. The function URL and the webhook
-- secret live in Vault; the job's text names neither. One call sets it up:
--
--   select hms_schedule_reconcile('https://<ref>.supabase.co/functions/v1/hms-webhook', '<secret>');
--
-- and `select hms_reconcile_now();` runs a pass by hand (the answer lands in net._http_response).
-- The function takes a turn here before any 100ms call: one pass at a time across every isolate,
-- passes a configurable interval apart, and a cursor that lets successive passes reach every
-- live room (hms_reconcile_begin / hms_reconcile_end).
-- Applies on a plain PostgreSQL: pg_cron, pg_net and Vault are only looked up when these
-- functions run, and each says which extension is missing. Idempotent.

-- The turn: one row. A pass holds it from hms_reconcile_begin until hms_reconcile_end, or until
-- its lease runs out (an isolate killed mid-pass never blocks the next pass for long).
-- `cursor` is the last live room (in rooms' hms_room_id order) a finished pass reached: the next
-- pass reads the live rooms after it first.
create table if not exists hms_private.reconcile_turn (
  id boolean primary key default true check (id),
  pass_id uuid,
  started_at timestamptz,
  lease_until timestamptz,
  finished_at timestamptz,
  cursor text
);
insert into hms_private.reconcile_turn (id) values (true) on conflict (id) do nothing;
alter table hms_private.reconcile_turn enable row level security;
revoke all on hms_private.reconcile_turn from public, anon, authenticated;

-- Takes the turn or says why not. One clock for every isolate: the database's.
--   granted: {"granted": true, "pass_id", "cursor", "live_rooms"}
--   refused: {"granted": false, "reason": "running" | "too_soon", "retry_after_ms"}
create or replace function public.hms_reconcile_begin(p_min_interval_ms bigint, p_lease_ms bigint)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := clock_timestamp();
  v_turn hms_private.reconcile_turn;
  v_running boolean;
  v_free_at timestamptz;
  v_pass uuid := gen_random_uuid();
begin
  if p_min_interval_ms is null or p_min_interval_ms < 0 or p_lease_ms is null or p_lease_ms <= 0 then
    raise exception 'hms_reconcile_begin: p_min_interval_ms must be >= 0 and p_lease_ms > 0'
      using errcode = '22023';
  end if;
  -- Concurrent callers queue on the row lock and each sees the previous one's turn.
  select * into v_turn from hms_private.reconcile_turn where id for update;
  -- Rule: one pass at a time: a started pass holds the turn until it ends or its lease runs out.
  v_running := v_turn.finished_at is null and v_turn.lease_until > v_now;
  -- Rule: passes start at least p_min_interval_ms apart.
  v_free_at := greatest(
    case when v_running then v_turn.lease_until end,
    v_turn.started_at + p_min_interval_ms * interval '1 millisecond');
  if v_free_at > v_now then
    return jsonb_build_object(
      'granted', false,
      'reason', case when v_running then 'running' else 'too_soon' end,
      'retry_after_ms', ceil(extract(epoch from v_free_at - v_now) * 1000)::bigint);
  end if;
  update hms_private.reconcile_turn
  set pass_id = v_pass, started_at = v_now, finished_at = null,
    lease_until = v_now + p_lease_ms * interval '1 millisecond'
  where id;
  return jsonb_build_object(
    'granted', true,
    'pass_id', v_pass,
    'cursor', v_turn.cursor,
    'live_rooms', (select count(*) from public.rooms where is_live));
end
$$;

-- Ends the pass that holds the turn and keeps where the next one starts (null: the beginning).
-- A pass whose lease ran out (another took the turn since) changes nothing.
create or replace function public.hms_reconcile_end(p_pass_id uuid, p_cursor text)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
begin
  update hms_private.reconcile_turn
  set finished_at = clock_timestamp(), cursor = p_cursor
  where id and pass_id = p_pass_id and finished_at is null;
  return found;
end
$$;

revoke all on function public.hms_reconcile_begin(bigint, bigint) from public, anon, authenticated;
revoke all on function public.hms_reconcile_end(uuid, text) from public, anon, authenticated;
grant execute on function public.hms_reconcile_begin(bigint, bigint) to service_role;
grant execute on function public.hms_reconcile_end(uuid, text) to service_role;

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

-- One pass, now: POST <url>/reconcile with the secret header and the body {"timestamp": …}
-- (checked like a webhook's against HMS_TIMESTAMP_TOLERANCE_SECONDS), signed with
-- x-100ms-signature where pgcrypto is installed, so it authenticates in every auth mode and a
-- captured signed request goes stale. Returns pg_net's request id; the timeout covers a whole pass
-- (the function stops new calls after 60 s).
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
  v_body jsonb := jsonb_build_object('timestamp',
    to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
  v_hmac text;
  v_headers jsonb;
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
  v_headers := jsonb_build_object('Content-Type', 'application/json',
    coalesce(v_header, 'x-webhook-secret'), v_secret);
  -- pg_net sends body::text. The secret goes only to pgcrypto's own hmac, in the schema the
  -- extension was installed into: never to a function of that name another role created.
  select format('%I.hmac', n.nspname) into v_hmac
  from pg_extension as e join pg_namespace as n on n.oid = e.extnamespace
  where e.extname = 'pgcrypto';
  if v_hmac is not null then
    execute format('select encode(%s(convert_to($1, ''UTF8''), convert_to($2, ''UTF8''), ''sha256''), ''hex'')',
      v_hmac)
      into v_hmac using v_body::text, v_secret;
    v_headers := v_headers || jsonb_build_object('x-100ms-signature', v_hmac);
  end if;
  return net.http_post(
    url := v_url,
    body := v_body,
    headers := v_headers,
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
  -- pg_cron's unschedule raises for a name it does not know: nothing scheduled is false.
  if not exists (select 1 from cron.job where jobname = 'hms-reconcile') then
    return false;
  end if;
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
