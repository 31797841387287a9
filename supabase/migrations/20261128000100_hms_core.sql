-- hms-webhook core: the rooms table, the per-room session/presence state, the dedup ledger and
-- public.hms_apply_event, which applies one 100ms webhook event in one transaction following the
-- counting model of docs/design.md §7. Idempotent: applying it twice changes nothing.

-- ---------------------------------------------------------------------------------------------
-- rooms: the app's table. Created with the spec's columns only when it does not exist yet, so an
-- app that already has `rooms` keeps its data, policies and grants.
-- ---------------------------------------------------------------------------------------------
do $$
begin
  if to_regclass('public.rooms') is null then
    create table public.rooms (
      id uuid primary key default gen_random_uuid(),
      hms_room_id text unique not null,
      is_live boolean default false,
      listener_count integer default 0,
      speaker_count integer default 0,
      last_active_at timestamptz default now(),
      trending_score numeric(10,2) default 0,
      featured boolean default false
    );
    -- Rooms are what the app shows: anyone may read them, only the service role writes them.
    alter table public.rooms enable row level security;
    create policy rooms_public_read on public.rooms for select to anon, authenticated using (true);
    grant select on public.rooms to anon, authenticated;
    revoke insert, update, delete, truncate, references, trigger on public.rooms from anon;
  end if;
end
$$;

-- Spec columns an older `rooms` may lack (harmless when present), then our own bookkeeping.
alter table public.rooms add column if not exists is_live boolean default false;
alter table public.rooms add column if not exists listener_count integer default 0;
alter table public.rooms add column if not exists speaker_count integer default 0;
alter table public.rooms add column if not exists last_active_at timestamptz default now();
alter table public.rooms add column if not exists trending_score numeric(10,2) default 0;
alter table public.rooms add column if not exists featured boolean default false;
alter table public.rooms add column if not exists current_session_id text;
alter table public.rooms add column if not exists updated_at timestamptz default now();

-- Non-negative counts. A negative count is what an older +1/-1 handler leaves behind and never
-- means anything, so such rows are set to 0 (the next webhook for the room rewrites its counts
-- anyway) rather than letting them block the migration or every later write to the row.
do $$
declare
  v_col text;
  v_fixed bigint;
begin
  foreach v_col in array array['listener_count', 'speaker_count'] loop
    if not exists (
      select 1 from pg_constraint
      where conrelid = 'public.rooms'::regclass and conname = 'rooms_' || v_col || '_nonnegative'
    ) then
      execute format('update public.rooms set %1$I = 0 where %1$I < 0', v_col);
      get diagnostics v_fixed = row_count;
      if v_fixed > 0 then
        raise notice 'rooms.%: % negative values set to 0', v_col, v_fixed;
      end if;
      execute format('alter table public.rooms add constraint %I check (%I >= 0)',
        'rooms_' || v_col || '_nonnegative', v_col);
    end if;
  end loop;
end
$$;

grant select, insert, update on public.rooms to service_role;

-- ---------------------------------------------------------------------------------------------
-- Sessions, keyed by (room, session_id). Holds the monotone session facts of design §7 plus the
-- counts of the session's present peers (kept exact under the room lock, see hms_apply_event).
-- session_id and peer_id use the "C" collation: the current-session tie-break compares bytes.
-- ---------------------------------------------------------------------------------------------
create table if not exists public.hms_sessions (
  room_id uuid not null references public.rooms (id) on delete cascade,
  session_id text collate "C" not null,
  started_at timestamptz,
  last_open_at timestamptz,
  closed_at timestamptz,
  listener_count integer not null default 0 check (listener_count >= 0),
  speaker_count integer not null default 0 check (speaker_count >= 0),
  updated_at timestamptz not null default now(),
  primary key (room_id, session_id)
);
-- The current session is the largest (started_at nulls first, session_id): one backward step.
create index if not exists hms_sessions_current_idx
  on public.hms_sessions (room_id, started_at desc nulls last, session_id desc);

-- Peers, keyed by (room, session_id, peer_id). Every column is a min/max/or aggregate of the
-- events received for the peer, so the row does not depend on delivery order or repetition.
create table if not exists public.hms_presence (
  room_id uuid not null,
  session_id text collate "C" not null,
  peer_id text collate "C" not null,
  seen boolean not null default false,
  join_reported_at timestamptz,
  first_role_change_at timestamptz,
  joined_at timestamptz,
  left_at timestamptz,
  role text,
  role_class text check (role_class in ('listener', 'speaker', 'ignored')),
  role_at timestamptz,
  role_kind smallint,
  present boolean not null default false,
  updated_at timestamptz not null default now(),
  primary key (room_id, session_id, peer_id),
  foreign key (room_id, session_id)
    references public.hms_sessions (room_id, session_id) on delete cascade
);
comment on column public.hms_presence.join_reported_at is
  'min of the join''s event time and every joined_at reported for the peer';
comment on column public.hms_presence.joined_at is
  'effective joined_at: join_reported_at, else the earliest role change time';
comment on column public.hms_presence.left_at is 'latest leave time; not null means the peer left';
comment on column public.hms_presence.present is
  'seen, not left, and joined after the session''s closed_at (if any)';
-- Serves the close path (seen peers joined before closed_at) and last_join_at (max joined_at).
create index if not exists hms_presence_seen_joined_idx
  on public.hms_presence (room_id, session_id, joined_at) where seen;

-- Dedup ledger and audit trail: one row per applied event id.
create table if not exists public.hms_events (
  event_id text primary key,
  event_type text not null,
  action text not null,
  room_id uuid not null references public.rooms (id) on delete cascade,
  session_id text not null,
  peer_id text,
  event_at timestamptz not null,
  received_at timestamptz not null default now()
);
create index if not exists hms_events_received_at_idx on public.hms_events (received_at);
create index if not exists hms_events_room_idx on public.hms_events (room_id);

-- Internal state: never visible to the API roles (Supabase grants them everything by default).
alter table public.hms_sessions enable row level security;
alter table public.hms_presence enable row level security;
alter table public.hms_events enable row level security;
revoke all on public.hms_sessions, public.hms_presence, public.hms_events
  from public, anon, authenticated;
grant select, insert, update, delete on public.hms_sessions, public.hms_presence, public.hms_events
  to service_role;

-- The RPC's answer (design §4/§6): status plus the room as the webhook response shows it. A plain
-- one-expression SQL function (no SET clause) so that it is inlined into hms_apply_event's plan.
-- Two arguments, so PostgREST does not take it for a computed column of rooms.
create or replace function public.hms_apply_answer(p_status text, p_room public.rooms)
returns jsonb
language sql
stable
as $$
  select jsonb_build_object(
    'status', p_status,
    'reason', null,
    'room', jsonb_build_object(
      'hms_room_id', p_room.hms_room_id,
      'is_live', coalesce(p_room.is_live, false),
      'listener_count', coalesce(p_room.listener_count, 0),
      'speaker_count', coalesce(p_room.speaker_count, 0),
      'trending_score', coalesce(p_room.trending_score, 0),
      'last_active_at',
        to_char(p_room.last_active_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    )
  )
$$;

revoke all on function public.hms_apply_answer(text, public.rooms) from public, anon, authenticated;
grant execute on function public.hms_apply_answer(text, public.rooms) to service_role;

-- ---------------------------------------------------------------------------------------------
-- hms_apply_event: one webhook = one call = one transaction (design §6, §7).
--
-- Counting strategy: deltas under the room lock, kept per session. Every call first locks the
-- room row, so all changes to one room's sessions and peers are serialized. A peer event
-- recomputes that one peer's `present`/role and moves its session's counters by the difference
-- (old contribution -> new). A close that raises closed_at flips exactly the present peers that
-- joined at or before it, and subtracts what it flipped. The room's counts are then copied from
-- the current session's counters, so a change of current session needs no recount either. Cost
-- per event is a handful of index lookups, independent of the room size (a 5,000-peer room costs
-- what a 5-peer room does); only a close touches every peer of its session, once.
-- ---------------------------------------------------------------------------------------------
create or replace function public.hms_apply_event(
  p_event_id text,
  p_event_type text,
  p_action text,
  p_room_id text,
  p_session_id text default '',
  p_session_started_at timestamptz default null,
  p_peer_id text default null,
  p_role text default null,
  p_role_class text default null,
  p_event_at timestamptz default null,
  p_joined_at timestamptz default null,
  p_auto_create boolean default false
) returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  c_max_len constant integer := 1024;
  v_sid text := coalesce(p_session_id, '');
  v_is_peer boolean := p_action in ('peer_join', 'peer_leave', 'role_change');
  v_sets_role boolean := p_action in ('peer_join', 'role_change');
  v_kind smallint := case p_action when 'peer_join' then 0 when 'role_change' then 1 end;
  v_room public.rooms%rowtype;
  v_sess public.hms_sessions%rowtype;
  v_cur public.hms_sessions%rowtype;
  v_peer public.hms_presence%rowtype;
  v_new public.hms_presence%rowtype;
  v_started timestamptz;
  v_open timestamptz;
  v_close timestamptz;
  v_old_closed timestamptz;
  v_rows integer;
  v_dl integer := 0;
  v_ds integer := 0;
  v_last_join timestamptz;
  v_live boolean;
  v_status text := 'applied';
begin
  -- Arguments. 22023 (invalid_parameter_value) is answered as HTTP 400 by PostgREST.
  if p_event_id is null or p_event_id = '' then
    raise exception using errcode = '22023', message = 'hms_apply_event: p_event_id is required';
  end if;
  if p_event_type is null or p_event_type = '' then
    raise exception using errcode = '22023', message = 'hms_apply_event: p_event_type is required';
  end if;
  if p_room_id is null or p_room_id = '' then
    raise exception using errcode = '22023', message = 'hms_apply_event: p_room_id is required';
  end if;
  if p_action is null or p_action not in
      ('session_open', 'session_close', 'peer_join', 'peer_leave', 'role_change', 'activity') then
    raise exception using errcode = '22023',
      message = format('hms_apply_event: unknown p_action %L', p_action),
      hint = 'expected session_open, session_close, peer_join, peer_leave, role_change or activity';
  end if;
  if p_event_at is null or not isfinite(p_event_at) then
    raise exception using errcode = '22023', message = 'hms_apply_event: p_event_at must be a finite time';
  end if;
  if (p_session_started_at is not null and not isfinite(p_session_started_at))
      or (p_joined_at is not null and not isfinite(p_joined_at)) then
    raise exception using errcode = '22023',
      message = 'hms_apply_event: p_session_started_at and p_joined_at must be finite times';
  end if;
  if greatest(length(p_event_id), length(p_event_type), length(p_room_id), length(v_sid),
              length(p_peer_id), length(p_role)) > c_max_len then
    raise exception using errcode = '22023',
      message = format('hms_apply_event: text arguments are limited to %s characters', c_max_len);
  end if;
  if v_is_peer and (p_peer_id is null or p_peer_id = '') then
    raise exception using errcode = '22023',
      message = format('hms_apply_event: p_peer_id is required for %s', p_action);
  end if;
  if p_role_class is not null and p_role_class not in ('listener', 'speaker', 'ignored') then
    raise exception using errcode = '22023',
      message = format('hms_apply_event: unknown p_role_class %L', p_role_class),
      hint = 'expected listener, speaker or ignored';
  end if;
  if v_sets_role and p_role_class is null then
    raise exception using errcode = '22023',
      message = format('hms_apply_event: p_role_class is required for %s', p_action);
  end if;

  -- 0. Retries are common: a committed duplicate is answered without locking (or writing) the
  --    room. One still in flight is caught by the ledger insert below, under the lock.
  if exists (select 1 from public.hms_events where event_id = p_event_id) then
    select * into v_room from public.rooms where hms_room_id = p_room_id;
    if found then
      return public.hms_apply_answer('duplicate', v_room);
    end if;
  end if;

  -- 1. Lock the room row: from here on this room's state is ours alone until commit.
  select * into v_room from public.rooms where hms_room_id = p_room_id for update;
  if not found then
    if not coalesce(p_auto_create, false) then
      -- Nothing is written for an unknown room, not even the ledger.
      return jsonb_build_object('status', 'ignored', 'reason', 'unknown room', 'room', null);
    end if;
    -- A concurrent creator may win; then we wait for it and lock its row instead.
    insert into public.rooms (hms_room_id, last_active_at) values (p_room_id, p_event_at)
    on conflict (hms_room_id) do nothing;
    select * into v_room from public.rooms where hms_room_id = p_room_id for update;
  end if;

  -- 2. Dedup ledger. A repeated id changes nothing (the model is monotone anyway; this saves work).
  insert into public.hms_events (event_id, event_type, action, room_id, session_id, peer_id, event_at)
  values (p_event_id, p_event_type, p_action, v_room.id, v_sid, p_peer_id, p_event_at)
  on conflict (event_id) do nothing;
  get diagnostics v_rows = row_count;
  if v_rows = 0 then
    v_status := 'duplicate';
  else
    -- 3. Session facts: started_at, last_open_at, closed_at only ever grow (greatest ignores nulls).
    v_started := greatest(p_session_started_at, case when p_action = 'session_open' then p_event_at end);
    v_open := case when p_action = 'session_open' then p_event_at end;
    v_close := case when p_action = 'session_close' then p_event_at end;
    select * into v_sess from public.hms_sessions where room_id = v_room.id and session_id = v_sid;
    if not found then
      insert into public.hms_sessions (room_id, session_id, started_at, last_open_at, closed_at)
      values (v_room.id, v_sid, v_started, v_open, v_close)
      returning * into v_sess;
    else
      v_old_closed := v_sess.closed_at;
      -- Only write when something grows: most events repeat what the session already knows.
      if greatest(v_sess.started_at, v_started) is distinct from v_sess.started_at
          or greatest(v_sess.last_open_at, v_open) is distinct from v_sess.last_open_at
          or greatest(v_sess.closed_at, v_close) is distinct from v_sess.closed_at then
        update public.hms_sessions
        set started_at = greatest(started_at, v_started),
            last_open_at = greatest(last_open_at, v_open),
            closed_at = greatest(closed_at, v_close),
            updated_at = now()
        where room_id = v_room.id and session_id = v_sid
        returning * into v_sess;
      end if;
    end if;

    -- 4a. A later close ends every present peer that joined at or before it.
    if v_sess.closed_at is distinct from v_old_closed then
      with flipped as (
        update public.hms_presence
        set present = false, updated_at = now()
        where room_id = v_room.id and session_id = v_sid and seen and present
          and joined_at <= v_sess.closed_at
        returning role_class
      )
      select count(*) filter (where role_class = 'listener'), count(*) filter (where role_class = 'speaker')
      into v_dl, v_ds
      from flipped;
      v_dl := -v_dl;
      v_ds := -v_ds;
    end if;

    -- 4b. One peer's facts, then its contribution to its session's counts.
    if v_is_peer then
      select * into v_peer from public.hms_presence
      where room_id = v_room.id and session_id = v_sid and peer_id = p_peer_id;
      v_new.room_id := v_room.id;
      v_new.session_id := v_sid;
      v_new.peer_id := p_peer_id;
      v_new.seen := coalesce(v_peer.seen, false) or v_sets_role;
      v_new.join_reported_at := least(v_peer.join_reported_at,
        case when p_action = 'peer_join' then p_event_at end, p_joined_at);
      v_new.first_role_change_at := least(v_peer.first_role_change_at,
        case when p_action = 'role_change' then p_event_at end);
      v_new.joined_at := coalesce(v_new.join_reported_at, v_new.first_role_change_at);
      v_new.left_at := greatest(v_peer.left_at, case when p_action = 'peer_leave' then p_event_at end);
      -- The role comes from the join/role change with the largest (time, kind, class, role).
      if v_sets_role and (v_peer.role_at is null
          or (p_event_at, v_kind, p_role_class collate "C", coalesce(p_role, '') collate "C")
             > (v_peer.role_at, v_peer.role_kind, v_peer.role_class collate "C",
                coalesce(v_peer.role, '') collate "C")) then
        v_new.role_at := p_event_at;
        v_new.role_kind := v_kind;
        v_new.role_class := p_role_class;
        v_new.role := p_role;
      else
        v_new.role_at := v_peer.role_at;
        v_new.role_kind := v_peer.role_kind;
        v_new.role_class := v_peer.role_class;
        v_new.role := v_peer.role;
      end if;
      v_new.present := v_new.seen and v_new.left_at is null
        and (v_sess.closed_at is null or v_new.joined_at > v_sess.closed_at);
      v_new.updated_at := now();

      if v_peer.peer_id is null then
        insert into public.hms_presence select v_new.*;
      elsif (v_new.seen, v_new.join_reported_at, v_new.first_role_change_at, v_new.left_at,
             v_new.role_at, v_new.role_kind, v_new.role_class, v_new.role, v_new.present)
            is distinct from
            (v_peer.seen, v_peer.join_reported_at, v_peer.first_role_change_at, v_peer.left_at,
             v_peer.role_at, v_peer.role_kind, v_peer.role_class, v_peer.role, v_peer.present) then
        update public.hms_presence
        set seen = v_new.seen,
            join_reported_at = v_new.join_reported_at,
            first_role_change_at = v_new.first_role_change_at,
            joined_at = v_new.joined_at,
            left_at = v_new.left_at,
            role_at = v_new.role_at,
            role_kind = v_new.role_kind,
            role_class = v_new.role_class,
            role = v_new.role,
            present = v_new.present,
            updated_at = v_new.updated_at
        where room_id = v_room.id and session_id = v_sid and peer_id = p_peer_id;
      end if;

      v_dl := v_dl
        + (v_new.present and v_new.role_class = 'listener')::integer
        - (coalesce(v_peer.present, false) and v_peer.role_class is not distinct from 'listener')::integer;
      v_ds := v_ds
        + (v_new.present and v_new.role_class = 'speaker')::integer
        - (coalesce(v_peer.present, false) and v_peer.role_class is not distinct from 'speaker')::integer;
    end if;

    if v_dl <> 0 or v_ds <> 0 then
      update public.hms_sessions
      set listener_count = listener_count + v_dl,
          speaker_count = speaker_count + v_ds,
          updated_at = now()
      where room_id = v_room.id and session_id = v_sid
      returning * into v_sess;
    end if;

    -- 5. The room row follows its current session: largest (started_at nulls first, session_id).
    --    If this event's session was already current it still is (only its row changed, and its
    --    started_at can only grow), so the common case needs no lookup.
    if v_room.current_session_id is not distinct from v_sid then
      v_cur := v_sess;
    else
      select * into v_cur from public.hms_sessions
      where room_id = v_room.id
      order by started_at desc nulls last, session_id desc
      limit 1;
    end if;
    if v_cur.closed_at is null then
      v_live := true;
    else
      select max(joined_at) into v_last_join from public.hms_presence
      where room_id = v_room.id and session_id = v_cur.session_id and seen;
      v_live := coalesce(greatest(v_cur.last_open_at, v_last_join) > v_cur.closed_at, false);
    end if;

    -- The rooms trigger (hms_trending migration) recomputes trending_score and trending_rank.
    update public.rooms
    set listener_count = v_cur.listener_count,
        speaker_count = v_cur.speaker_count,
        is_live = v_live,
        current_session_id = v_cur.session_id,
        last_active_at = greatest(last_active_at, p_event_at),
        updated_at = now()
    where id = v_room.id
    returning * into v_room;
  end if;

  return public.hms_apply_answer(v_status, v_room);
end
$$;

comment on function public.hms_apply_event is
  'Applies one 100ms webhook event (docs/design.md §6-7); returns {status, reason, room}.';

revoke all on function public.hms_apply_event(text, text, text, text, text, timestamptz, text, text,
  text, timestamptz, timestamptz, boolean) from public, anon, authenticated;
grant execute on function public.hms_apply_event(text, text, text, text, text, timestamptz, text,
  text, text, timestamptz, timestamptz, boolean) to service_role;

-- ---------------------------------------------------------------------------------------------
-- hms_prune_events: the ledger only has to outlive 100ms's retries and replays. Deletes rows
-- received longer ago than p_older_than (default: hms_settings.event_retention, else 7 days).
-- A pruned event that is delivered again is applied again, which changes nothing (monotone model).
-- ---------------------------------------------------------------------------------------------
create or replace function public.hms_prune_events(p_older_than interval default null)
returns bigint
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_keep interval := p_older_than;
  v_rows bigint;
begin
  if v_keep is not null and v_keep < interval '0' then
    raise exception using errcode = '22023', message = 'hms_prune_events: p_older_than must not be negative';
  end if;
  -- The settings table comes with the trending migration; read it only when it is there.
  if v_keep is null and to_regclass('public.hms_settings') is not null then
    execute 'select event_retention from public.hms_settings limit 1' into v_keep;
  end if;
  v_keep := coalesce(v_keep, interval '7 days');
  delete from public.hms_events where received_at < now() - v_keep;
  get diagnostics v_rows = row_count;
  return v_rows;
end
$$;

revoke all on function public.hms_prune_events(interval) from public, anon, authenticated;
grant execute on function public.hms_prune_events(interval) to service_role;
