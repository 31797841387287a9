-- hms-webhook core: the rooms table, the per-room session/presence state, the dedup ledger and the
-- RPC's answer. The counting rules that fill them (docs/design.md §7) are in
-- 20261201000100_hms_rules_v2.sql. Idempotent: applying it twice changes nothing.

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
-- counts of the session's present peers (kept exact under the room lock by the rules migration).
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
-- one-expression SQL function (no SET clause), so that it is inlined where it is used.
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

-- hms_apply_event, hms_apply_facts and their steps: 20261201000100_hms_rules_v2.sql.
-- hms_prune_events: with the settings it reads, in 20261201000100_hms_rules_v2.sql.
