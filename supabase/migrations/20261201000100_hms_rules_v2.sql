-- hms-webhook counting rules v2 (docs/design.md §6-7): hms_apply_event (one webhook), hms_apply_facts
-- (one room's snapshot from 100ms's API), hms_close_expired_sessions (the 12-hour rule), built from
-- small named steps, each with the rule it implements beside it. Idempotent: applying it twice
-- changes nothing, and it upgrades a database built by the earlier migrations in place.
--
-- The rules, in the words of docs/design.md §7:
--   Envelope sessions (session_id <> ''):
--     closed(S)  = a close was applied for S (session close, room end, a snapshot reporting S
--                  inactive, or the 12-hour rule). live(S) = S exists and not closed(S).
--     present(P) = seen(P) and not left(P) and not closed(S). A leave is final.
--   Legacy flat format (session_id = ''): epochs by time.
--     live('')   = no close yet, or the latest open/join is later than the latest close.
--     present(P) = P's latest join is later than its latest leave and than the latest close
--                  (ties count as a leave / as closed).
--   Both: the room shows its current session (largest started_at nulls first, then session_id);
--     activity only moves last_active_at, which never passes the time received + 120 s.
--
-- Cost: every call locks the room row first, so a room's state changes one call at a time and the
-- counts move by deltas: a handful of index lookups per event whatever the room size. Only a close
-- or a snapshot touches every peer of its session, once.

-- ---------------------------------------------------------------------------------------------
-- New facts the rules need (nullable columns: adding them rewrites nothing). Whether they are new
-- says whether the data below still has to be upgraded (once, at the end of this file).
-- ---------------------------------------------------------------------------------------------
drop table if exists pg_temp.hms_rules_v2_upgrade;
create temporary table hms_rules_v2_upgrade as
select not exists (
  select 1 from information_schema.columns
  where table_schema = 'public' and table_name = 'hms_sessions' and column_name = 'last_snapshot_at'
) as needed;

alter table public.hms_sessions add column if not exists last_join_at timestamptz;
alter table public.hms_sessions add column if not exists last_snapshot_at timestamptz;
comment on column public.hms_sessions.last_join_at is
  'flat format: the latest join (or role change) time of any peer; what live('''') compares';
comment on column public.hms_sessions.last_snapshot_at is
  'latest p_observed_at of a present_set fact for the session';
comment on column public.hms_sessions.closed_at is
  'latest close time; not null means closed (for envelope sessions, for good)';

alter table public.hms_presence add column if not exists last_join_at timestamptz;
alter table public.hms_presence add column if not exists first_listed_at timestamptz;
alter table public.hms_presence add column if not exists absent_at timestamptz;
comment on column public.hms_presence.last_join_at is
  'latest join or role change time (flat format: the latest event by time wins)';
comment on column public.hms_presence.first_listed_at is
  'earliest p_observed_at of a present_set that listed the peer';
comment on column public.hms_presence.absent_at is
  'latest p_observed_at of a present_set of the session that did not list the peer';
comment on column public.hms_presence.joined_at is
  'effective join time: join_reported_at, else the first role change, else the first listing';
comment on column public.hms_presence.present is
  'the present(P) rule of docs/design.md §7 for the peer''s session and format';
comment on column public.hms_presence.role_kind is
  'tie-break of the role key: 0 join, 1 role change, 2 snapshot observation';

-- The rules no longer look peers up by join time (presence of a whole session goes through the
-- primary key's (room_id, session_id) prefix), so this index only cost writes.
drop index if exists public.hms_presence_seen_joined_idx;

-- The 12-hour rule looks for open envelope sessions by start; few rows are ever in this index.
create index if not exists hms_sessions_open_started_idx
  on public.hms_sessions (started_at) where closed_at is null and session_id <> '';

-- ---------------------------------------------------------------------------------------------
-- Rules as functions of stored facts (pure; inlined where they are used).
-- ---------------------------------------------------------------------------------------------

-- live(S). Envelope: not closed. Flat: no close yet, or an open/join later than the latest close.
create or replace function public.hms_session_live(p_session public.hms_sessions)
returns boolean
language sql
immutable
as $$
  select case
    when p_session.session_id <> '' then p_session.closed_at is null
    else p_session.closed_at is null
      or coalesce(greatest(p_session.last_open_at, p_session.last_join_at) > p_session.closed_at, false)
  end
$$;

-- present(P). Envelope: seen, not left (by a leave, or by a snapshot that no longer listed it after
-- it joined), session not closed. Flat: the latest join beats the latest leave and the latest close.
create or replace function public.hms_peer_present(
  p_peer public.hms_presence,
  p_session public.hms_sessions
) returns boolean
language sql
immutable
as $$
  select case
    when p_session.session_id <> '' then
      p_peer.seen
      and p_peer.left_at is null
      and not coalesce(p_peer.joined_at < p_peer.absent_at, false)
      and p_session.closed_at is null
    else
      p_peer.seen
      and p_peer.last_join_at is not null
      and (p_peer.left_at is null or p_peer.last_join_at > p_peer.left_at)
      and (p_session.closed_at is null or p_peer.last_join_at > p_session.closed_at)
  end
$$;

-- last_active_at = max(previous, least(event time, received + 120 s)): no event can pin a room.
create or replace function public.hms_active_at(
  p_previous timestamptz,
  p_event_at timestamptz,
  p_received_at timestamptz
) returns timestamptz
language sql
immutable
as $$
  select case
    when p_event_at is null then p_previous
    else greatest(p_previous, least(p_event_at, p_received_at + interval '120 seconds'))
  end
$$;


-- The answers' `room` object (design §4/§6), null for no room.
create or replace function public.hms_room_json(p_room public.rooms)
returns jsonb
language sql
stable
as $$
  select case when p_room.id is null then null else public.hms_apply_answer('applied', p_room) -> 'room' end
$$;

-- What a snapshot or the 12-hour rule reports of a room before and after it (design §6.1).
create or replace function public.hms_room_counts(p_room public.rooms)
returns jsonb
language sql
immutable
as $$
  select jsonb_build_object('is_live', coalesce(p_room.is_live, false),
    'listener_count', coalesce(p_room.listener_count, 0), 'speaker_count', coalesce(p_room.speaker_count, 0))
$$;

-- The room's current session: the largest (started_at nulls first, session_id). One index step.
-- PL/pgSQL so that its plan is kept for the connection.
create or replace function public.hms_current_session(p_room uuid)
returns public.hms_sessions
language plpgsql
stable
set search_path = ''
as $$
declare
  v_session public.hms_sessions;
begin
  select s.* into v_session from public.hms_sessions as s
  where s.room_id = p_room
  order by s.started_at desc nulls last, s.session_id desc
  limit 1;
  return v_session;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Steps. Each runs under the room lock its caller took (hms_lock_room).
-- ---------------------------------------------------------------------------------------------

-- Step: lock the room row, creating it first when asked. A null row: unknown room.
create or replace function public.hms_lock_room(p_room_id text, p_create boolean, p_last_active_at timestamptz)
returns public.rooms
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_room public.rooms;
begin
  select * into v_room from public.rooms where hms_room_id = p_room_id for update;
  if not found and p_create then
    -- A concurrent creator may win; then we wait for it and lock its row instead.
    insert into public.rooms (hms_room_id, last_active_at) values (p_room_id, p_last_active_at)
    on conflict (hms_room_id) do nothing;
    select * into v_room from public.rooms where hms_room_id = p_room_id for update;
  end if;
  return v_room;
end
$$;

-- Step: move a session's counters by the difference a step computed (never a recount).
create or replace function public.hms_move_counts(
  p_room uuid, p_session_id text, p_listeners integer, p_speakers integer
) returns public.hms_sessions
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_session public.hms_sessions;
begin
  update public.hms_sessions
  set listener_count = listener_count + p_listeners,
      speaker_count = speaker_count + p_speakers,
      updated_at = now()
  where room_id = p_room and session_id = p_session_id
  returning * into v_session;
  return v_session;
end
$$;

-- Step: peers still marked present that the rules no longer hold present (present(P) after a
-- close, or after a snapshot that no longer listed them) stop being present, and their session's
-- counts lose them.
create or replace function public.hms_end_presences(p_session public.hms_sessions)
returns public.hms_sessions
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_ended_listeners integer;
  v_ended_speakers integer;
begin
  with ended as (
    update public.hms_presence as p
    set present = false, updated_at = now()
    where p.room_id = p_session.room_id and p.session_id = p_session.session_id and p.present
      and not public.hms_peer_present(p, p_session)
    returning p.role_class
  )
  select count(*) filter (where role_class = 'listener'), count(*) filter (where role_class = 'speaker')
  into v_ended_listeners, v_ended_speakers
  from ended;
  if v_ended_listeners = 0 and v_ended_speakers = 0 then
    return p_session;
  end if;
  return public.hms_move_counts(p_session.room_id, p_session.session_id, -v_ended_listeners, -v_ended_speakers);
end
$$;

-- Step: what an event or fact says about session S. started_at, last_open_at, closed_at and (flat
-- format) last_join_at only ever grow (greatest ignores nulls); a new S is created. Rule: a close
-- ends every presence it closes — envelope: all of them, for good; flat: every peer whose latest
-- join is not later than the close — and their counts with them.
create or replace function public.hms_note_session(
  p_room uuid,
  p_session_id text,
  p_started_at timestamptz,
  p_opened_at timestamptz,
  p_closed_at timestamptz,
  p_joined_at timestamptz
) returns public.hms_sessions
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_flat_join timestamptz := case when p_session_id = '' then p_joined_at end;
  v_old public.hms_sessions;
  v_new public.hms_sessions;
begin
  select * into v_old from public.hms_sessions where room_id = p_room and session_id = p_session_id;
  if not found then
    insert into public.hms_sessions (room_id, session_id, started_at, last_open_at, closed_at, last_join_at)
    values (p_room, p_session_id, p_started_at, p_opened_at, p_closed_at, v_flat_join)
    returning * into v_new;
    return v_new;  -- no peers yet: nothing to close
  end if;
  -- Most events repeat what the session already knows: write only when something grows.
  if greatest(v_old.started_at, p_started_at) is not distinct from v_old.started_at
      and greatest(v_old.last_open_at, p_opened_at) is not distinct from v_old.last_open_at
      and greatest(v_old.closed_at, p_closed_at) is not distinct from v_old.closed_at
      and greatest(v_old.last_join_at, v_flat_join) is not distinct from v_old.last_join_at then
    return v_old;
  end if;
  update public.hms_sessions
  set started_at = greatest(started_at, p_started_at),
      last_open_at = greatest(last_open_at, p_opened_at),
      closed_at = greatest(closed_at, p_closed_at),
      last_join_at = greatest(last_join_at, v_flat_join),
      updated_at = now()
  where room_id = p_room and session_id = p_session_id
  returning * into v_new;

  if v_new.closed_at is distinct from v_old.closed_at then
    v_new := public.hms_end_presences(v_new);
  end if;
  return v_new;
end
$$;

-- Step: fold one observation of peer P into its row, recompute present(P) and move the session's
-- counts by P's change. p_kind is what was observed at p_at:
--   'join'        a join (webhook)                      'leave'  a leave (webhook)
--   'role_change' a role change (webhook)               'listed' listed by a present_set
--   'observed'    a peer fact: joined at p_joined_at (else listed at p_at), left at p_left_at
--                 when given, its role observed at p_at
-- Every column is a min, max or "or" over the observations, so the row does not depend on their
-- order or repetition:
--   seen = any join, role change, listing or peer fact; left_at = max leave time;
--   join_reported_at = min join time (a join's time, any reported joined_at);
--   first_role_change_at, first_listed_at = min; last_join_at = max join or role change time;
--   role = the one with the largest (time, kind, class, role), kind 0 join, 1 role change,
--   2 observation: the latest role wins;
--   absent_at = latest snapshot of S that did not list P. A new row starts at the session's
--   last_snapshot_at: no snapshot applied so far listed P (a listing creates the row).
create or replace function public.hms_note_peer(
  p_session public.hms_sessions,
  p_peer_id text,
  p_kind text,
  p_at timestamptz,
  p_joined_at timestamptz default null,
  p_role_class text default null,
  p_role text default null,
  p_left_at timestamptz default null
) returns public.hms_sessions
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_join_at timestamptz := case p_kind when 'join' then least(p_at, p_joined_at)
                                       when 'listed' then null else p_joined_at end;
  v_listed_at timestamptz := case when p_kind = 'listed' or (p_kind = 'observed' and p_joined_at is null)
                                  then p_at end;
  v_leave_at timestamptz := case p_kind when 'leave' then p_at when 'observed' then p_left_at end;
  v_role_kind smallint := case p_kind when 'join' then 0 when 'role_change' then 1 when 'observed' then 2 end;
  v_old public.hms_presence;
  v_new public.hms_presence;
  v_listeners integer;
  v_speakers integer;
begin
  select * into v_old from public.hms_presence
  where room_id = p_session.room_id and session_id = p_session.session_id and peer_id = p_peer_id;
  v_new.room_id := p_session.room_id;
  v_new.session_id := p_session.session_id;
  v_new.peer_id := p_peer_id;
  v_new.seen := coalesce(v_old.seen, false) or p_kind <> 'leave';
  v_new.join_reported_at := least(v_old.join_reported_at, v_join_at);
  v_new.first_role_change_at := least(v_old.first_role_change_at,
    case when p_kind = 'role_change' then p_at end);
  v_new.first_listed_at := least(v_old.first_listed_at, v_listed_at);
  v_new.joined_at := coalesce(v_new.join_reported_at, v_new.first_role_change_at, v_new.first_listed_at);
  v_new.last_join_at := greatest(v_old.last_join_at,
    case when p_kind in ('join', 'role_change') then p_at end);
  v_new.left_at := greatest(v_old.left_at, v_leave_at);
  v_new.absent_at := case when v_old.peer_id is null then p_session.last_snapshot_at else v_old.absent_at end;
  if v_role_kind is not null and p_role_class is not null and (v_old.role_at is null
      or (p_at, v_role_kind, p_role_class collate "C", coalesce(p_role, '') collate "C")
         > (v_old.role_at, v_old.role_kind, v_old.role_class collate "C", coalesce(v_old.role, '') collate "C")) then
    v_new.role_at := p_at;
    v_new.role_kind := v_role_kind;
    v_new.role_class := p_role_class;
    v_new.role := p_role;
  else
    v_new.role_at := v_old.role_at;
    v_new.role_kind := v_old.role_kind;
    v_new.role_class := v_old.role_class;
    v_new.role := v_old.role;
  end if;
  v_new.present := public.hms_peer_present(v_new, p_session);
  v_new.updated_at := now();

  if v_old.peer_id is null then
    insert into public.hms_presence select v_new.*;
  elsif (v_new.seen, v_new.join_reported_at, v_new.first_role_change_at, v_new.first_listed_at,
         v_new.last_join_at, v_new.left_at, v_new.role_at, v_new.role_kind, v_new.role_class,
         v_new.role, v_new.present)
        is not distinct from
        (v_old.seen, v_old.join_reported_at, v_old.first_role_change_at, v_old.first_listed_at,
         v_old.last_join_at, v_old.left_at, v_old.role_at, v_old.role_kind, v_old.role_class,
         v_old.role, v_old.present) then
    return p_session;  -- a repeat: nothing to write
  else
    update public.hms_presence
    set seen = v_new.seen,
        join_reported_at = v_new.join_reported_at,
        first_role_change_at = v_new.first_role_change_at,
        first_listed_at = v_new.first_listed_at,
        joined_at = v_new.joined_at,
        last_join_at = v_new.last_join_at,
        left_at = v_new.left_at,
        role_at = v_new.role_at,
        role_kind = v_new.role_kind,
        role_class = v_new.role_class,
        role = v_new.role,
        present = v_new.present,
        updated_at = v_new.updated_at
    where room_id = p_session.room_id and session_id = p_session.session_id and peer_id = p_peer_id;
  end if;

  -- P's contribution to its session's counts, before -> after.
  v_listeners := (v_new.present and v_new.role_class is not distinct from 'listener')::integer
    - (coalesce(v_old.present, false) and v_old.role_class is not distinct from 'listener')::integer;
  v_speakers := (v_new.present and v_new.role_class is not distinct from 'speaker')::integer
    - (coalesce(v_old.present, false) and v_old.role_class is not distinct from 'speaker')::integer;
  if v_listeners = 0 and v_speakers = 0 then
    return p_session;
  end if;
  return public.hms_move_counts(p_session.room_id, p_session.session_id, v_listeners, v_speakers);
end
$$;

-- Step: a snapshot of envelope session S taken at p_observed_at listed exactly p_peer_ids. Rule:
-- listed peers are seen; every other peer of S that joined before p_observed_at has left by then
-- (absent_at), which never ends a presence that began after it.
create or replace function public.hms_note_present_set(
  p_session public.hms_sessions,
  p_observed_at timestamptz,
  p_peer_ids text[]
) returns public.hms_sessions
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_session public.hms_sessions := p_session;
  v_listed text[] := coalesce(p_peer_ids, '{}');
  v_peer text;
begin
  -- Listed peers first: one without a row yet starts from the earlier snapshots' absent_at.
  foreach v_peer in array v_listed loop
    v_session := public.hms_note_peer(v_session, v_peer, 'listed', p_observed_at);
  end loop;
  -- Every unlisted peer without a leave was absent at p_observed_at (absent_at only grows; kept
  -- also for a peer not present now: a join reported later may move it before the snapshot).
  update public.hms_presence as p
  set absent_at = p_observed_at, updated_at = now()
  where p.room_id = v_session.room_id and p.session_id = v_session.session_id
    and p.left_at is null and (p.absent_at is null or p.absent_at < p_observed_at)
    and not (p.peer_id = any (v_listed));
  -- Those of them that joined before the snapshot have left (present(P)).
  v_session := public.hms_end_presences(v_session);
  if v_session.last_snapshot_at is null or v_session.last_snapshot_at < p_observed_at then
    update public.hms_sessions
    set last_snapshot_at = p_observed_at, updated_at = now()
    where room_id = v_session.room_id and session_id = v_session.session_id
    returning * into v_session;
  end if;
  return v_session;
end
$$;

-- Step: the room row follows its current session (counts, live(S)) and last_active_at moves by
-- the hms_active_at rule. Written only when something changes; the rooms trigger (trending
-- migration) then recomputes trending_score and trending_rank.
create or replace function public.hms_update_room(
  p_room public.rooms,
  p_current public.hms_sessions,
  p_active_at timestamptz,
  p_received_at timestamptz
) returns public.rooms
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_has_session boolean := p_current.session_id is not null;
  v_listeners integer := case when v_has_session then p_current.listener_count else p_room.listener_count end;
  v_speakers integer := case when v_has_session then p_current.speaker_count else p_room.speaker_count end;
  -- is_live is unchanged while the room has no session at all.
  v_live boolean := case when v_has_session then public.hms_session_live(p_current) else p_room.is_live end;
  v_current_id text := case when v_has_session then p_current.session_id else p_room.current_session_id end;
  v_active timestamptz := public.hms_active_at(p_room.last_active_at, p_active_at, p_received_at);
  v_room public.rooms;
begin
  if (v_listeners, v_speakers, v_live, v_current_id, v_active)
      is not distinct from
     (p_room.listener_count, p_room.speaker_count, p_room.is_live, p_room.current_session_id,
      p_room.last_active_at) then
    return p_room;
  end if;
  update public.rooms
  set listener_count = v_listeners,
      speaker_count = v_speakers,
      is_live = v_live,
      current_session_id = v_current_id,
      last_active_at = v_active,
      updated_at = now()
  where id = p_room.id
  returning * into v_room;
  return v_room;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- hms_apply_event: one webhook = one call = one transaction (design §6).
-- ---------------------------------------------------------------------------------------------
drop function if exists public.hms_apply_event(text, text, text, text, text, timestamptz, text, text,
  text, timestamptz, timestamptz, boolean);

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
  p_auto_create boolean default false,
  p_received_at timestamptz default null
) returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  c_max_len constant integer := 1024;
  v_session_id text := coalesce(p_session_id, '');
  v_received_at timestamptz := coalesce(p_received_at, now());
  v_is_peer boolean := p_action in ('peer_join', 'peer_leave', 'role_change');
  v_room public.rooms;
  v_session public.hms_sessions;
  v_current public.hms_sessions;
  v_recorded integer;
begin
  -- Arguments. 22023 (invalid_parameter_value) is answered as HTTP 400 by PostgREST.
  if coalesce(p_event_id, '') = '' or coalesce(p_event_type, '') = '' or coalesce(p_room_id, '') = '' then
    raise exception using errcode = '22023',
      message = 'hms_apply_event: p_event_id, p_event_type and p_room_id are required';
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
  if not isfinite(coalesce(p_session_started_at, p_event_at)) or not isfinite(coalesce(p_joined_at, p_event_at))
      or not isfinite(v_received_at) then
    raise exception using errcode = '22023',
      message = 'hms_apply_event: p_session_started_at, p_joined_at and p_received_at must be finite times';
  end if;
  if greatest(length(p_event_id), length(p_event_type), length(p_room_id), length(v_session_id),
              length(p_peer_id), length(p_role)) > c_max_len then
    raise exception using errcode = '22023',
      message = format('hms_apply_event: text arguments are limited to %s characters', c_max_len);
  end if;
  if v_is_peer and coalesce(p_peer_id, '') = '' then
    raise exception using errcode = '22023',
      message = format('hms_apply_event: p_peer_id is required for %s', p_action);
  end if;
  if p_role_class is not null and p_role_class not in ('listener', 'speaker', 'ignored') then
    raise exception using errcode = '22023',
      message = format('hms_apply_event: unknown p_role_class %L', p_role_class),
      hint = 'expected listener, speaker or ignored';
  end if;
  if p_action in ('peer_join', 'role_change') and p_role_class is null then
    raise exception using errcode = '22023',
      message = format('hms_apply_event: p_role_class is required for %s', p_action);
  end if;

  -- Rule: a repeated event id writes nothing, not even the room auto-create would make. A
  -- committed one is answered without locking; one still in flight is caught under the lock.
  if exists (select 1 from public.hms_events where event_id = p_event_id) then
    select * into v_room from public.rooms where hms_room_id = p_room_id;
    return jsonb_build_object('status', 'duplicate', 'reason', null, 'room', public.hms_room_json(v_room));
  end if;

  v_room := public.hms_lock_room(p_room_id, coalesce(p_auto_create, false),
    public.hms_active_at(null, p_event_at, v_received_at));
  if v_room.id is null then
    -- Nothing is written for an unknown room, not even the ledger.
    return jsonb_build_object('status', 'ignored', 'reason', 'unknown room', 'room', null);
  end if;

  insert into public.hms_events (event_id, event_type, action, room_id, session_id, peer_id, event_at)
  values (p_event_id, p_event_type, p_action, v_room.id, v_session_id, p_peer_id, p_event_at)
  on conflict (event_id) do nothing;
  get diagnostics v_recorded = row_count;
  if v_recorded = 0 then
    -- It committed while we waited for the lock. A room this call just auto-created goes again:
    -- a duplicate writes nothing.
    delete from public.rooms where id = v_room.id and xmin = pg_catalog.pg_current_xact_id()::xid;
    if found then
      return jsonb_build_object('status', 'duplicate', 'reason', null, 'room', null);
    end if;
    return public.hms_apply_answer('duplicate', v_room);
  end if;

  -- Rule: activity only moves last_active_at; it creates no session and never changes is_live.
  if p_action <> 'activity' then
    v_session := public.hms_note_session(v_room.id, v_session_id,
      greatest(p_session_started_at, case when p_action = 'session_open' then p_event_at end),
      case when p_action = 'session_open' then p_event_at end,
      case when p_action = 'session_close' then p_event_at end,
      case when p_action in ('peer_join', 'role_change') then p_event_at end);
    if v_is_peer then
      v_session := public.hms_note_peer(v_session, p_peer_id,
        case p_action when 'peer_join' then 'join' when 'peer_leave' then 'leave' else 'role_change' end,
        p_event_at, p_joined_at,
        case when p_action <> 'peer_leave' then p_role_class end,
        case when p_action <> 'peer_leave' then p_role end);
    end if;
    -- The session this event touched is still current if it was (its started_at only grows).
    v_current := case when v_room.current_session_id is not distinct from v_session_id then v_session
                      else public.hms_current_session(v_room.id) end;
  end if;
  v_room := public.hms_update_room(v_room, v_current, p_event_at, v_received_at);
  return public.hms_apply_answer('applied', v_room);
end
$$;

comment on function public.hms_apply_event is
  'Applies one 100ms webhook event (docs/design.md §6-7); returns {status, reason, room}.';

-- ---------------------------------------------------------------------------------------------
-- hms_apply_facts: one room's snapshot from 100ms's API, in one transaction (design §6).
-- ---------------------------------------------------------------------------------------------
create or replace function public.hms_fact_time(p_fact jsonb, p_key text)
returns timestamptz
language plpgsql
stable
set search_path = ''
as $$
declare
  v_time timestamptz := (p_fact ->> p_key)::timestamptz;
begin
  if v_time is not null and not isfinite(v_time) then
    raise exception using errcode = '22023', message = format('hms_apply_facts: %s must be a finite time', p_key);
  end if;
  return v_time;
end
$$;

create or replace function public.hms_apply_facts(
  p_room_id text,
  p_observed_at timestamptz,
  p_received_at timestamptz default null,
  p_facts jsonb default '[]'
) returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  c_max_len constant integer := 1024;
  v_received_at timestamptz := coalesce(p_received_at, now());
  v_room public.rooms;
  v_before jsonb;
  v_fact jsonb;
  v_kind text;
  v_session_id text;
  v_session public.hms_sessions;
  v_was_open boolean;
  v_closed integer := 0;
  v_active_at timestamptz;
begin
  if coalesce(p_room_id, '') = '' or length(p_room_id) > c_max_len then
    raise exception using errcode = '22023', message = 'hms_apply_facts: p_room_id is required';
  end if;
  if p_observed_at is null or not isfinite(p_observed_at) or not isfinite(v_received_at) then
    raise exception using errcode = '22023',
      message = 'hms_apply_facts: p_observed_at and p_received_at must be finite times';
  end if;
  if jsonb_typeof(p_facts) is distinct from 'array' then
    raise exception using errcode = '22023', message = 'hms_apply_facts: p_facts must be a JSON array';
  end if;

  v_room := public.hms_lock_room(p_room_id, false, null);
  if v_room.id is null then
    return jsonb_build_object('status', 'ignored', 'reason', 'unknown room', 'room', null);
  end if;
  v_before := public.hms_room_counts(v_room);

  for v_fact in select value from jsonb_array_elements(p_facts) loop
    v_kind := v_fact ->> 'kind';
    v_session_id := v_fact ->> 'session_id';
    if jsonb_typeof(v_fact) is distinct from 'object' or v_kind is null
        or v_kind not in ('session', 'peer', 'present_set') then
      raise exception using errcode = '22023',
        message = 'hms_apply_facts: each fact is an object with kind session, peer or present_set';
    end if;
    -- Facts come from 100ms's API, which only knows envelope sessions ('' is the flat format's).
    if coalesce(v_session_id, '') = '' or length(v_session_id) > c_max_len then
      raise exception using errcode = '22023', message = 'hms_apply_facts: session_id is required';
    end if;
    if v_kind = 'session' then
      -- A reported start; closed_at present means 100ms reports S inactive: a close at that time.
      select closed_at is null into v_was_open
      from public.hms_sessions where room_id = v_room.id and session_id = v_session_id;
      v_session := public.hms_note_session(v_room.id, v_session_id,
        public.hms_fact_time(v_fact, 'started_at'), null, public.hms_fact_time(v_fact, 'closed_at'), null);
      if coalesce(v_was_open, true) and v_session.closed_at is not null then
        v_closed := v_closed + 1;
      end if;
      v_active_at := greatest(v_active_at, public.hms_fact_time(v_fact, 'started_at'),
        public.hms_fact_time(v_fact, 'closed_at'));
    elsif v_kind = 'peer' then
      if coalesce(v_fact ->> 'peer_id', '') = '' or length(v_fact ->> 'peer_id') > c_max_len
          or length(v_fact ->> 'role') > c_max_len then
        raise exception using errcode = '22023', message = 'hms_apply_facts: a peer fact needs peer_id';
      end if;
      if (v_fact ->> 'role_class') not in ('listener', 'speaker', 'ignored') then
        raise exception using errcode = '22023',
          message = format('hms_apply_facts: unknown role_class %L', v_fact ->> 'role_class');
      end if;
      v_session := public.hms_note_session(v_room.id, v_session_id, null, null, null, null);
      -- A join at joined_at, a leave at left_at when present, the role observed at p_observed_at.
      perform public.hms_note_peer(v_session, v_fact ->> 'peer_id', 'observed', p_observed_at,
        public.hms_fact_time(v_fact, 'joined_at'), v_fact ->> 'role_class', v_fact ->> 'role',
        public.hms_fact_time(v_fact, 'left_at'));
      v_active_at := greatest(v_active_at, public.hms_fact_time(v_fact, 'joined_at'),
        public.hms_fact_time(v_fact, 'left_at'));
    else
      if jsonb_typeof(v_fact -> 'peer_ids') is distinct from 'array' then
        raise exception using errcode = '22023', message = 'hms_apply_facts: present_set needs peer_ids';
      end if;
      v_session := public.hms_note_session(v_room.id, v_session_id, null, null, null, null);
      perform public.hms_note_present_set(v_session, p_observed_at,
        array(select jsonb_array_elements_text(v_fact -> 'peer_ids')));
    end if;
  end loop;

  v_room := public.hms_update_room(v_room, public.hms_current_session(v_room.id), v_active_at, v_received_at);
  return jsonb_build_object(
    'status', 'applied',
    'room', public.hms_room_json(v_room),
    'before', v_before,
    'changed', v_before is distinct from public.hms_room_counts(v_room),
    'sessions_closed', v_closed);
end
$$;

comment on function public.hms_apply_facts is
  'Applies one room''s snapshot facts from 100ms''s API (docs/design.md §6-7); monotone and idempotent.';

-- ---------------------------------------------------------------------------------------------
-- hms_close_expired_sessions: the 12-hour rule. A 100ms session lasts at most 12 h, so an envelope
-- session that started more than 12 h before p_now and has no close is closed at start + 12 h.
-- ---------------------------------------------------------------------------------------------
create or replace function public.hms_close_expired_sessions(p_now timestamptz default null)
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_cutoff timestamptz := coalesce(p_now, now()) - interval '12 hours';
  v_room_id uuid;
  v_room public.rooms;
  v_before jsonb;
  v_expired record;
  v_closed integer := 0;
  v_rooms jsonb := '[]'::jsonb;
begin
  if not isfinite(v_cutoff) then
    raise exception using errcode = '22023', message = 'hms_close_expired_sessions: p_now must be a finite time';
  end if;
  -- Rooms in id order, each locked before its sessions are read again: no deadlock with webhooks,
  -- which lock one room.
  for v_room_id in
    select distinct s.room_id from public.hms_sessions as s
    where s.closed_at is null and s.session_id <> '' and s.started_at < v_cutoff
    order by s.room_id
  loop
    select * into v_room from public.rooms where id = v_room_id for update;
    v_before := public.hms_room_counts(v_room);
    for v_expired in
      select s.session_id, s.started_at from public.hms_sessions as s
      where s.room_id = v_room_id and s.closed_at is null and s.session_id <> '' and s.started_at < v_cutoff
    loop
      perform public.hms_note_session(v_room_id, v_expired.session_id, null, null,
        v_expired.started_at + interval '12 hours', null);
      v_closed := v_closed + 1;
    end loop;
    v_room := public.hms_update_room(v_room, public.hms_current_session(v_room_id), null, null);
    v_rooms := v_rooms || jsonb_build_array(jsonb_build_object(
      'hms_room_id', v_room.hms_room_id, 'before', v_before, 'room', public.hms_room_json(v_room)));
  end loop;
  return jsonb_build_object('sessions_closed', v_closed, 'rooms', v_rooms);
end
$$;

comment on function public.hms_close_expired_sessions is
  'Closes envelope sessions that started more than 12 h before p_now, at start + 12 h.';

-- ---------------------------------------------------------------------------------------------
-- Permissions: the entry points are for the service role only; the steps are internal.
-- ---------------------------------------------------------------------------------------------
revoke all on function public.hms_session_live(public.hms_sessions) from public, anon, authenticated;
grant execute on function public.hms_session_live(public.hms_sessions) to service_role;
revoke all on function public.hms_peer_present(public.hms_presence, public.hms_sessions) from public, anon, authenticated;
grant execute on function public.hms_peer_present(public.hms_presence, public.hms_sessions) to service_role;
revoke all on function public.hms_active_at(timestamptz, timestamptz, timestamptz) from public, anon, authenticated;
grant execute on function public.hms_active_at(timestamptz, timestamptz, timestamptz) to service_role;
revoke all on function public.hms_room_json(public.rooms) from public, anon, authenticated;
grant execute on function public.hms_room_json(public.rooms) to service_role;
revoke all on function public.hms_room_counts(public.rooms) from public, anon, authenticated;
grant execute on function public.hms_room_counts(public.rooms) to service_role;
revoke all on function public.hms_current_session(uuid) from public, anon, authenticated;
grant execute on function public.hms_current_session(uuid) to service_role;
revoke all on function public.hms_lock_room(text, boolean, timestamptz) from public, anon, authenticated;
grant execute on function public.hms_lock_room(text, boolean, timestamptz) to service_role;
revoke all on function public.hms_move_counts(uuid, text, integer, integer) from public, anon, authenticated;
grant execute on function public.hms_move_counts(uuid, text, integer, integer) to service_role;
revoke all on function public.hms_end_presences(public.hms_sessions) from public, anon, authenticated;
grant execute on function public.hms_end_presences(public.hms_sessions) to service_role;
revoke all on function public.hms_note_session(uuid, text, timestamptz, timestamptz, timestamptz, timestamptz) from public, anon, authenticated;
grant execute on function public.hms_note_session(uuid, text, timestamptz, timestamptz, timestamptz, timestamptz) to service_role;
revoke all on function public.hms_note_peer(public.hms_sessions, text, text, timestamptz, timestamptz, text, text, timestamptz) from public, anon, authenticated;
grant execute on function public.hms_note_peer(public.hms_sessions, text, text, timestamptz, timestamptz, text, text, timestamptz) to service_role;
revoke all on function public.hms_note_present_set(public.hms_sessions, timestamptz, text[]) from public, anon, authenticated;
grant execute on function public.hms_note_present_set(public.hms_sessions, timestamptz, text[]) to service_role;
revoke all on function public.hms_update_room(public.rooms, public.hms_sessions, timestamptz, timestamptz) from public, anon, authenticated;
grant execute on function public.hms_update_room(public.rooms, public.hms_sessions, timestamptz, timestamptz) to service_role;
revoke all on function public.hms_apply_event(text, text, text, text, text, timestamptz, text, text, text, timestamptz,
  timestamptz, boolean, timestamptz) from public, anon, authenticated;
grant execute on function public.hms_apply_event(text, text, text, text, text, timestamptz, text, text, text, timestamptz,
  timestamptz, boolean, timestamptz) to service_role;
revoke all on function public.hms_fact_time(jsonb, text) from public, anon, authenticated;
grant execute on function public.hms_fact_time(jsonb, text) to service_role;
revoke all on function public.hms_apply_facts(text, timestamptz, timestamptz, jsonb) from public, anon, authenticated;
grant execute on function public.hms_apply_facts(text, timestamptz, timestamptz, jsonb) to service_role;
revoke all on function public.hms_close_expired_sessions(timestamptz) from public, anon, authenticated;
grant execute on function public.hms_close_expired_sessions(timestamptz) to service_role;

-- ---------------------------------------------------------------------------------------------
-- The rooms trigger (its home is the trending migration; its one current definition, re-created
-- here for deployed databases, before the upgrade below writes rooms): without the settings row
-- it scores with the fallbacks hms_refresh_trending uses, never with nulls (which made every
-- written room score 99999999.99). An aggregate always answers one row; the fallbacks are
-- checked against the hms_settings column defaults by the behaviour tests.
-- ---------------------------------------------------------------------------------------------
create or replace function public.hms_rooms_trending()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_wl double precision;
  v_ws double precision;
  v_fb double precision;
  v_hl double precision;
begin
  select coalesce(max(listener_weight), 1), coalesce(max(speaker_weight), 3),
    coalesce(max(featured_bonus), 5), coalesce(max(half_life_hours), 6)
  into v_wl, v_ws, v_fb, v_hl
  from public.hms_settings where id;
  new.trending_score := public.hms_room_score(new.listener_count, new.speaker_count, new.featured,
    new.last_active_at, now(), v_wl, v_ws, v_fb, v_hl);
  new.trending_rank := public.hms_trending_rank(new.listener_count, new.speaker_count, new.featured,
    extract(epoch from new.last_active_at)::double precision, v_wl, v_ws, v_fb, v_hl);
  return new;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Upgrade of data written under the first rules: once, when this migration added its columns (a
-- no-op on a fresh database, skipped when the migration runs again).
-- ---------------------------------------------------------------------------------------------
do $upgrade$
begin
  if not (select needed from pg_temp.hms_rules_v2_upgrade) then
    return;
  end if;
  -- Activity used to create its session; under these rules it creates none. A session that only
  -- activity made (no peers, and only activity in the ledger) goes; where the ledger was pruned,
  -- there is no telling, and the session stays.
  delete from public.hms_sessions as s
  where not exists (select 1 from public.hms_presence as p
                    where p.room_id = s.room_id and p.session_id = s.session_id)
    and exists (select 1 from public.hms_events as e
                where e.room_id = s.room_id and e.session_id = s.session_id and e.action = 'activity')
    and not exists (select 1 from public.hms_events as e
                    where e.room_id = s.room_id and e.session_id = s.session_id and e.action <> 'activity');

  -- A room left without any session is as it was before its first session: not live, no counts.
  update public.rooms as r
  set is_live = false, listener_count = 0, speaker_count = 0, current_session_id = null, updated_at = now()
  where r.current_session_id is not null
    and not exists (select 1 from public.hms_sessions as s where s.room_id = r.id);

  -- A peer's latest join: the first rules kept the role of its latest join or role change, and every
  -- join and role change sets a role, so role_at is that time.
  update public.hms_presence
  set last_join_at = role_at
  where last_join_at is null and seen and role_at is not null and role_kind in (0, 1);

  update public.hms_sessions as s
  set last_join_at = greatest(s.last_join_at, j.latest)
  from (
    select room_id, session_id, max(last_join_at) as latest
    from public.hms_presence where session_id = '' and seen group by room_id, session_id
  ) as j
  where s.room_id = j.room_id and s.session_id = j.session_id
    and s.last_join_at is distinct from greatest(s.last_join_at, j.latest);

  -- present(P) under these rules, then the counts that follow from it.
  update public.hms_presence as p
  set present = public.hms_peer_present(p, s), updated_at = now()
  from public.hms_sessions as s
  where s.room_id = p.room_id and s.session_id = p.session_id
    and p.present is distinct from public.hms_peer_present(p, s);

  update public.hms_sessions as s
  set listener_count = c.listeners, speaker_count = c.speakers, updated_at = now()
  from (
    select s2.room_id, s2.session_id,
      count(p.peer_id) filter (where p.present and p.role_class = 'listener')::integer as listeners,
      count(p.peer_id) filter (where p.present and p.role_class = 'speaker')::integer as speakers
    from public.hms_sessions as s2
    left join public.hms_presence as p on p.room_id = s2.room_id and p.session_id = s2.session_id
    group by s2.room_id, s2.session_id
  ) as c
  where s.room_id = c.room_id and s.session_id = c.session_id
    and (s.listener_count, s.speaker_count) is distinct from (c.listeners, c.speakers);

  -- Rooms follow their current session; a last_active_at pinned in the future comes back to the
  -- latest time the rules allow (now + 120 s).
  update public.rooms as r
  set listener_count = (c.current).listener_count,
      speaker_count = (c.current).speaker_count,
      is_live = public.hms_session_live(c.current),
      current_session_id = (c.current).session_id,
      updated_at = now()
  from (
    select distinct on (s.room_id) s.room_id, s as current
    from public.hms_sessions as s
    order by s.room_id, s.started_at desc nulls last, s.session_id desc
  ) as c
  where r.id = c.room_id
    and (r.listener_count, r.speaker_count, r.is_live, r.current_session_id)
        is distinct from ((c.current).listener_count, (c.current).speaker_count,
                          public.hms_session_live(c.current), (c.current).session_id);

  update public.rooms
  set last_active_at = now() + interval '120 seconds', updated_at = now()
  where last_active_at > now() + interval '120 seconds';
end
$upgrade$;

drop table pg_temp.hms_rules_v2_upgrade;
