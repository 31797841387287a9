-- hms-webhook schema (docs/design.md §5): the app's rooms table (kept and extended, never
-- recreated), the settings an app may change, and the private state the rules keep. Every rule
-- that fills these tables is in 20261206000200_hms_rules.sql; the writers in
-- 20261206000300_hms_apply.sql. Idempotent: applying it twice changes nothing.
--
-- Layout (Supabase's recommended one): `public` holds only what apps and the function call;
-- everything else lives in `hms_private`, which PostgREST does not expose and the API roles
-- cannot even look into.

create schema if not exists hms_private;
revoke all on schema hms_private from public, anon, authenticated;
grant usage on schema hms_private to service_role;
-- Functions are executable by PUBLIC unless revoked: each migration that creates functions in
-- hms_private revokes that and grants them to the service role (the feed migration grants
-- authenticated the few its views need).

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

-- Spec columns an older `rooms` may lack (harmless when present), then our own bookkeeping:
--   current_session_id   the session the counts are of (design §7: the current session)
--   trending_rank        the feed's order key, log2(base) + epoch / (half-life × 3600)
--   trending_rank_band   floor(trending_rank): the only rank the feed's indexes hold. It changes
--                        when the decayed score doubles or halves, so most webhooks leave every
--                        index of rooms alone and the update stays HOT (design §8)
--   peak_listener_count, peak_speaker_count   the highest counts the room showed during its
--                        current session (folded into the session's row when it stops being
--                        current)
--   realtime_sent_at, realtime_pending        broadcast coalescing (realtime migration)
alter table public.rooms add column if not exists is_live boolean default false;
alter table public.rooms add column if not exists listener_count integer default 0;
alter table public.rooms add column if not exists speaker_count integer default 0;
alter table public.rooms add column if not exists last_active_at timestamptz default now();
alter table public.rooms add column if not exists trending_score numeric(10,2) default 0;
alter table public.rooms add column if not exists featured boolean default false;
alter table public.rooms add column if not exists current_session_id text;
alter table public.rooms add column if not exists updated_at timestamptz default now();
alter table public.rooms add column if not exists trending_rank double precision;
alter table public.rooms add column if not exists trending_rank_band double precision
  generated always as (floor(trending_rank)) stored;
alter table public.rooms add column if not exists peak_listener_count integer not null default 0;
alter table public.rooms add column if not exists peak_speaker_count integer not null default 0;
alter table public.rooms add column if not exists realtime_sent_at timestamptz;
alter table public.rooms add column if not exists realtime_pending boolean not null default false;

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
-- Room on each page for the HOT update every webhook makes.
alter table public.rooms set (fillfactor = 70);

-- ---------------------------------------------------------------------------------------------
-- hms_settings: exactly one row (id is always true), the settings an app may change. The bounds
-- keep every score finite and the NUMERIC(10,2) column from overflowing for realistic counts;
-- NaN fails them too. Changing a weight re-ranks every room; changing `realtime` switches the
-- realtime path (triggers in the apply and realtime migrations).
-- ---------------------------------------------------------------------------------------------
create table if not exists public.hms_settings (
  id boolean primary key default true check (id),
  listener_weight double precision not null default 1
    check (listener_weight >= 0 and listener_weight <= 1000000),
  speaker_weight double precision not null default 3
    check (speaker_weight >= 0 and speaker_weight <= 1000000),
  featured_bonus double precision not null default 5
    check (featured_bonus >= 0 and featured_bonus <= 1000000),
  half_life_hours double precision not null default 6
    check (half_life_hours >= 0.001 and half_life_hours <= 1000000),
  event_retention interval not null default interval '7 days'
    check (event_retention >= interval '1 hour'),
  realtime text not null default 'postgres_changes'
    constraint hms_settings_realtime_mode check (realtime in ('postgres_changes', 'broadcast', 'off')),
  -- 0 sends every change; at most an hour, so a forgotten value cannot silence a room for long.
  realtime_interval_ms integer not null default 1000
    constraint hms_settings_realtime_interval check (realtime_interval_ms between 0 and 3600000),
  listeners_visible boolean not null default false,
  updated_at timestamptz not null default now()
);
insert into public.hms_settings (id) values (true) on conflict (id) do nothing;
comment on column public.hms_settings.realtime is
  'postgres_changes (rooms in the supabase_realtime publication), broadcast (realtime.send per room topic, coalesced) or off';
comment on column public.hms_settings.realtime_interval_ms is
  'broadcast only: at most one message per topic per this many ms; the flush sends the last state';
comment on column public.hms_settings.listeners_visible is
  'room_participants: authenticated also reads listeners (speakers are always readable)';

alter table public.hms_settings enable row level security;
revoke all on public.hms_settings from public, anon, authenticated;
grant select, update on public.hms_settings to service_role;

-- ---------------------------------------------------------------------------------------------
-- Sessions, keyed by (room, session_id): the monotone session facts of design §7 and the recap.
-- session_id and peer_id use the "C" collation: the current-session tie-break compares bytes.
-- The counts of a room's current session are in its rooms row (one row written per webhook);
-- a session's peaks are folded in here when it stops being current.
-- ---------------------------------------------------------------------------------------------
create table if not exists hms_private.sessions (
  room_id uuid not null references public.rooms (id) on delete cascade,
  session_id text collate "C" not null,
  started_at timestamptz,
  last_open_at timestamptz,
  closed_at timestamptz,
  last_join_at timestamptz,
  last_snapshot_at timestamptz,
  peak_listeners integer not null default 0,
  peak_speakers integer not null default 0,
  -- Set when the session's peers are pruned (hms_private.prune_events); until then the recap
  -- derives them from the peers' rows.
  unique_participants integer,
  participant_seconds numeric,
  updated_at timestamptz not null default now(),
  primary key (room_id, session_id)
) with (fillfactor = 80);
comment on column hms_private.sessions.closed_at is
  'latest close time; not null means closed (for envelope sessions, for good)';
comment on column hms_private.sessions.last_join_at is
  'flat format: the latest join (or role change) time of any peer; what live('''') compares';
comment on column hms_private.sessions.last_snapshot_at is
  'latest p_observed_at of a present_set fact for the session';
-- The current session is the largest (started_at nulls first, session_id): one backward step.
create index if not exists sessions_current_idx
  on hms_private.sessions (room_id, started_at desc nulls last, session_id desc);
-- The 12-hour rule looks for open envelope sessions by start; few rows are ever in this index.
create index if not exists sessions_open_started_idx
  on hms_private.sessions (started_at) where closed_at is null and session_id <> '';

-- Peers, keyed by (room, session_id, peer_id). Every rule column is a min/max/or aggregate of the
-- observations of the peer, so the row does not depend on delivery order or repetition.
create table if not exists hms_private.presence (
  room_id uuid not null,
  session_id text collate "C" not null,
  peer_id text collate "C" not null,
  seen boolean not null default false,
  join_reported_at timestamptz,
  first_role_change_at timestamptz,
  first_listed_at timestamptz,
  joined_at timestamptz,
  last_join_at timestamptz,
  left_at timestamptz,
  absent_at timestamptz,
  role text,
  role_class text check (role_class in ('listener', 'speaker', 'ignored')),
  role_at timestamptz,
  role_kind smallint,
  user_id text,
  user_name text,
  present boolean not null default false,
  updated_at timestamptz not null default now(),
  primary key (room_id, session_id, peer_id),
  foreign key (room_id, session_id)
    references hms_private.sessions (room_id, session_id) on delete cascade
) with (fillfactor = 90);
comment on column hms_private.presence.join_reported_at is
  'min of the join''s event time and every joined_at reported for the peer';
comment on column hms_private.presence.first_listed_at is
  'earliest p_observed_at of a present_set that listed the peer';
comment on column hms_private.presence.joined_at is
  'effective join time: join_reported_at, else the first role change, else the first listing';
comment on column hms_private.presence.last_join_at is
  'latest join or role change time (flat format: the latest event by time wins)';
comment on column hms_private.presence.left_at is 'latest leave time; not null means the peer left';
comment on column hms_private.presence.absent_at is
  'latest p_observed_at of a present_set of the session that did not list the peer';
comment on column hms_private.presence.role_kind is
  'tie-break of the role key: 0 join, 1 role change, 2 snapshot observation';
comment on column hms_private.presence.user_id is
  'as 100ms sends it, from the observation that set the role (else the first that had one)';
comment on column hms_private.presence.present is
  'the present(P) rule of docs/design.md §7 for the peer''s session and format';

-- Dedup ledger and audit trail: one row per applied (envelope time, event id). The key starts
-- with the envelope time, so inserts go to the right edge of its b-tree instead of a random page
-- (a random key costs a full-page image on nearly every insert with full_page_writes on). 100ms
-- keeps both the id and the timestamp across retries and replays (design §7).
create table if not exists hms_private.events (
  sent_at timestamptz not null,
  event_id text not null,
  event_type text not null,
  action text not null,
  room_id uuid not null,
  session_id text not null,
  peer_id text,
  event_at timestamptz not null,
  received_at timestamptz not null default now(),
  primary key (sent_at, event_id)
);
-- The prune finds old rows through a BRIN on received_at (rows arrive in that order: one range
-- per 128 pages, almost nothing to maintain per insert). No room_id index: deleting rooms (rare)
-- scans the ledger once per statement (the rooms delete trigger) instead of every webhook paying
-- an index entry.
create index if not exists events_received_at_brin
  on hms_private.events using brin (received_at);

grant select, insert, update, delete on hms_private.sessions, hms_private.presence,
  hms_private.events to service_role;
