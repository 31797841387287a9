-- hms-webhook reconcile guard (README "Reconcile", design §11): one pass at a time across every
-- isolate, passes a configurable interval apart, and the cursor that lets successive passes
-- reach every live room; the scheduler's request carries its time; the feed's index shows a role
-- no more rooms than the rooms read policy does. Idempotent.

create schema if not exists hms_private;
revoke all on schema hms_private from public, anon, authenticated;

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

-- The scheduler's request carries its time (`{"timestamp": …}`, checked like a webhook's against
-- HMS_TIMESTAMP_TOLERANCE_SECONDS), and, where pgcrypto is installed, the x-100ms-signature over
-- the exact body sent, so it authenticates in every auth mode and a captured signed request goes
-- stale. Replaces the definition in the reconcile migration.
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
  perform public.hms_reconcile_require(array['pg_net', 'supabase_vault']);
  select * into v_names from public.hms_reconcile_secret_names();
  select decrypted_secret into v_url from vault.decrypted_secrets where name = v_names.url_name;
  select decrypted_secret into v_secret from vault.decrypted_secrets where name = v_names.secret_name;
  select decrypted_secret into v_header from vault.decrypted_secrets where name = v_names.header_name;
  if v_url is null or v_secret is null then
    raise exception 'reconcile is not set up: run select hms_schedule_reconcile(<function url>, <webhook secret>)'
      using errcode = '55000';
  end if;
  v_headers := jsonb_build_object('Content-Type', 'application/json',
    coalesce(v_header, 'x-webhook-secret'), v_secret);
  -- pg_net sends body::text; pgcrypto lives in whichever schema it was installed into.
  select format('%I.hmac', n.nspname) into v_hmac
  from pg_proc as p join pg_namespace as n on n.oid = p.pronamespace
  where p.proname = 'hmac' and pg_get_function_identity_arguments(p.oid) = 'bytea, bytea, text'
  limit 1;
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

revoke all on function public.hms_reconcile_now() from public, anon, authenticated;

-- The feed's index says no more than rooms: a rank row is visible exactly when its room is,
-- under the caller's own rooms read policy. hms_room_visible runs as the caller (security
-- invoker), so rooms' RLS applies inside it; plpgsql on purpose: never inlined, so the policy
-- looks each rank row's room up by its primary key as the feed's index scan meets it (the feed
-- stops after the rows it needs) instead of the planner hashing all of rooms.
create or replace function public.hms_room_visible(p_room_id uuid)
returns boolean
language plpgsql
stable
set search_path = ''
as $$
begin
  return exists (select 1 from public.rooms as r where r.id = p_room_id);
end
$$;

revoke all on function public.hms_room_visible(uuid) from public;
grant execute on function public.hms_room_visible(uuid) to anon, authenticated, service_role;

drop policy if exists hms_room_rank_public_read on public.hms_room_rank;
create policy hms_room_rank_public_read on public.hms_room_rank
  for select to anon, authenticated, service_role
  using (public.hms_room_visible(room_id));
