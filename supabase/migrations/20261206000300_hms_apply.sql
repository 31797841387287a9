-- hms-webhook apply path (docs/design.md §6-7): hms_apply_event (one webhook), hms_apply_facts
-- (one room's snapshot from 100ms's API), hms_close_expired_sessions (the 12-hour rule), the
-- rooms trigger for the app's own writes, the settings trigger, and the ledger prune. The rules
-- they apply are the SQL functions of 20261206000200_hms_rules.sql, inlined where they are used.
-- Idempotent.
--
-- Cost: every call takes its room's turn and locks the room row first, so a room's state changes
-- one call at a time and the counts move by deltas. A peer event writes three rows: its ledger
-- row, the peer's row and the room's row (which carries the current session's counts, peaks,
-- score and rank, computed in the same UPDATE; the rooms trigger's WHEN clause keeps it off this
-- write).
-- A session's row is written only when one of its facts grows. Only a close or a snapshot
-- touches every peer of its session, once.

do $$
begin
  create type hms_private.counts as (listeners integer, speakers integer);
exception when duplicate_object then
  null;
end
$$;
comment on type hms_private.counts is 'listener and speaker counts, or a change of them';

-- The trending weights with the hms_settings column defaults as fallbacks, so that a missing
-- settings row never scores with nulls. The outer join of one empty row always answers one row
-- (hms_settings holds at most one), without an aggregate for every webhook's update to set up.
-- No SET clause, so that it is inlined into the statement that reads it.
create or replace function hms_private.weights()
returns table (listener_weight double precision, speaker_weight double precision,
  featured_bonus double precision, half_life_hours double precision)
language sql
stable
as $$
  select coalesce(s.listener_weight, 1), coalesce(s.speaker_weight, 3),
    coalesce(s.featured_bonus, 5), coalesce(s.half_life_hours, 6)
  from (select) as one left join public.hms_settings as s on s.id
$$;

-- Rule: a room's calls take their turn in arrival order. An advisory lock queues its waiters
-- first come, first served and hands itself to the next at commit; a row lock alone lets a call
-- that has just arrived take the row while the waiter it woke is still being scheduled, which in
-- a hot room leaves some webhooks waiting many times the median. The key: 'hms' (6843763)
-- and the hash of the 100ms room id; rooms whose ids share a hash share a queue, nothing more.
-- Correctness rests on the row lock that follows. The turn is taken before the row lock, and the
-- 12-hour rule, which locks many rooms, takes no turn, so the two never wait on each other in a
-- cycle. Nothing is written (advisory locks are not logged): an unknown room still writes nothing.
create or replace function hms_private.take_turn(p_hms_room_id text)
returns void
language sql
volatile
as $$
  select pg_catalog.pg_advisory_xact_lock(6843763, pg_catalog.hashtext(p_hms_room_id))
$$;

-- ---------------------------------------------------------------------------------------------
-- Steps. Each runs under the room lock its caller took.
-- ---------------------------------------------------------------------------------------------

-- Step: peers still marked present that the rules no longer hold present (present(P) after a
-- close, or after a snapshot that no longer listed them) stop being present. The caller recounts.
create or replace function hms_private.end_presences(p_session hms_private.sessions)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
begin
  update hms_private.presence as p
  set present = false, updated_at = now()
  where p.room_id = p_session.room_id and p.session_id = p_session.session_id and p.present
    and not hms_private.peer_present(p.session_id, p_session.closed_at, p.seen, p.joined_at,
      p.last_join_at, p.left_at, p.absent_at);
end
$$;

-- Step: what an event or fact says about session S. started_at, last_open_at, closed_at and (flat
-- format) last_join_at only ever grow (greatest ignores nulls); a new S is created. Rule: a close
-- ends every presence it closes — envelope: all of them, for good; flat: every peer whose latest
-- join is not later than the close.
create or replace function hms_private.note_session(
  p_room uuid,
  p_session_id text,
  p_started_at timestamptz,
  p_opened_at timestamptz,
  p_closed_at timestamptz,
  p_joined_at timestamptz
) returns hms_private.sessions
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_flat_join timestamptz := case when p_session_id = '' then p_joined_at end;
  v_old hms_private.sessions;
  v_new hms_private.sessions;
begin
  select * into v_old from hms_private.sessions where room_id = p_room and session_id = p_session_id;
  if not found then
    insert into hms_private.sessions (room_id, session_id, started_at, last_open_at, closed_at, last_join_at)
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
  update hms_private.sessions
  set started_at = greatest(started_at, p_started_at),
      last_open_at = greatest(last_open_at, p_opened_at),
      closed_at = greatest(closed_at, p_closed_at),
      last_join_at = greatest(last_join_at, v_flat_join),
      updated_at = now()
  where room_id = p_room and session_id = p_session_id
  returning * into v_new;
  if v_new.closed_at is distinct from v_old.closed_at then
    perform hms_private.end_presences(v_new);
  end if;
  return v_new;
end
$$;

-- Step: fold one observation of peer P into its row, recompute present(P), and answer how P's
-- change moves its session's counts. p_kind is what was observed at p_at:
--   'join'        a join (webhook)                      'leave'  a leave (webhook)
--   'role_change' a role change (webhook)               'listed' listed by a present_set
--   'observed'    a peer fact: joined at p_joined_at (else listed at p_at), left at p_left_at
--                 when given, its role observed at p_at
-- Every rule column is a min, max or "or" over the observations, so the row does not depend on
-- their order or repetition:
--   seen = any join, role change, listing or peer fact; left_at = max leave time;
--   join_reported_at = min join time (a join's time, any reported joined_at);
--   first_role_change_at, first_listed_at = min; last_join_at = max join or role change time;
--   role = the one with the largest (time, kind, class, role), kind 0 join, 1 role change,
--   2 observation: the latest role wins; user_id and user_name come with it (else the first
--   observation that had them: 100ms sends the same ones for a peer);
--   absent_at = latest snapshot of S that did not list P. A new row starts at the session's
--   last_snapshot_at: no snapshot applied so far listed P (a listing creates the row).
create or replace function hms_private.note_peer(
  p_session hms_private.sessions,
  p_peer_id text,
  p_kind text,
  p_at timestamptz,
  p_joined_at timestamptz default null,
  p_role_class text default null,
  p_role text default null,
  p_left_at timestamptz default null,
  p_user_id text default null,
  p_user_name text default null
) returns hms_private.counts
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
  v_old hms_private.presence;
  v_new hms_private.presence;
  v_delta hms_private.counts;
begin
  select * into v_old from hms_private.presence
  where room_id = p_session.room_id and session_id = p_session.session_id and peer_id = p_peer_id;
  v_new := v_old;
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
    v_new.user_id := coalesce(p_user_id, v_old.user_id);
    v_new.user_name := coalesce(p_user_name, v_old.user_name);
  else
    v_new.user_id := coalesce(v_old.user_id, p_user_id);
    v_new.user_name := coalesce(v_old.user_name, p_user_name);
  end if;
  v_new.present := hms_private.peer_present(p_session.session_id, p_session.closed_at, v_new.seen,
    v_new.joined_at, v_new.last_join_at, v_new.left_at, v_new.absent_at);
  v_new.updated_at := now();

  if v_old.peer_id is null then
    insert into hms_private.presence select v_new.*;
  elsif row(v_new.seen, v_new.join_reported_at, v_new.first_role_change_at, v_new.first_listed_at,
         v_new.last_join_at, v_new.left_at, v_new.role_at, v_new.role_kind, v_new.role_class,
         v_new.role, v_new.user_id, v_new.user_name, v_new.present)
        is not distinct from
        row(v_old.seen, v_old.join_reported_at, v_old.first_role_change_at, v_old.first_listed_at,
         v_old.last_join_at, v_old.left_at, v_old.role_at, v_old.role_kind, v_old.role_class,
         v_old.role, v_old.user_id, v_old.user_name, v_old.present) then
    return row(0, 0)::hms_private.counts;  -- a repeat: nothing to write
  else
    update hms_private.presence
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
        user_id = v_new.user_id,
        user_name = v_new.user_name,
        present = v_new.present,
        updated_at = v_new.updated_at
    where room_id = p_session.room_id and session_id = p_session.session_id and peer_id = p_peer_id;
  end if;

  -- P's contribution to its session's counts, before -> after.
  v_delta.listeners := (v_new.present and v_new.role_class is not distinct from 'listener')::integer
    - (coalesce(v_old.present, false) and v_old.role_class is not distinct from 'listener')::integer;
  v_delta.speakers := (v_new.present and v_new.role_class is not distinct from 'speaker')::integer
    - (coalesce(v_old.present, false) and v_old.role_class is not distinct from 'speaker')::integer;
  return v_delta;
end
$$;

-- Step: a snapshot of envelope session S taken at p_observed_at listed exactly p_peer_ids. Rule:
-- listed peers are seen; every other peer of S that joined before p_observed_at has left by then
-- (absent_at), which never ends a presence that began after it.
create or replace function hms_private.note_present_set(
  p_session hms_private.sessions,
  p_observed_at timestamptz,
  p_peer_ids text[]
) returns void
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_listed text[] := coalesce(p_peer_ids, '{}');
  v_peer text;
begin
  -- Listed peers first: one without a row yet starts from the earlier snapshots' absent_at.
  foreach v_peer in array v_listed loop
    perform hms_private.note_peer(p_session, v_peer, 'listed', p_observed_at);
  end loop;
  -- Every unlisted peer without a leave was absent at p_observed_at (absent_at only grows; kept
  -- also for a peer not present now: a join reported later may move it before the snapshot).
  update hms_private.presence as p
  set absent_at = p_observed_at, updated_at = now()
  where p.room_id = p_session.room_id and p.session_id = p_session.session_id
    and p.left_at is null and (p.absent_at is null or p.absent_at < p_observed_at)
    and not (p.peer_id = any (v_listed));
  -- Those of them that joined before the snapshot have left (present(P)).
  perform hms_private.end_presences(p_session);
  if p_session.last_snapshot_at is null or p_session.last_snapshot_at < p_observed_at then
    update hms_private.sessions
    set last_snapshot_at = p_observed_at, updated_at = now()
    where room_id = p_session.room_id and session_id = p_session.session_id;
  end if;
end
$$;

-- Step: the room row follows its current session (counts, live(S), peaks), last_active_at moves
-- by the active_at rule, and the trending score and rank follow (no rooms trigger runs for this
-- write, see hms_rooms_trending below). Written only when something changes.
--   p_touched  the session the caller changed (null row: none); p_delta how its counts moved
--              (null: recount them from its peers)
--   p_any      the caller may have changed any session (facts, 12-hour rule): look the current
--              one up and recount it
-- Rule: the current session is the largest (started_at nulls first, session_id). A touched
-- session that was current stays current (its started_at only grows). When another session
-- becomes current, the old one's peaks go to its own row and the new one's counts are recounted.
create or replace function hms_private.update_room(
  p_room public.rooms,
  p_touched hms_private.sessions,
  p_delta hms_private.counts,
  p_active_at timestamptz,
  p_received_at timestamptz,
  p_any boolean default false
) returns public.rooms
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_current hms_private.sessions;
  v_recount boolean := false;
  v_listeners integer := coalesce(p_room.listener_count, 0);
  v_speakers integer := coalesce(p_room.speaker_count, 0);
  v_live boolean := p_room.is_live;
  v_current_id text := p_room.current_session_id;
  v_peak_listeners integer := p_room.peak_listener_count;
  v_peak_speakers integer := p_room.peak_speaker_count;
  v_active timestamptz := hms_private.active_at(p_room.last_active_at, p_active_at, p_received_at);
  v_room public.rooms;
begin
  if not p_any and p_touched.session_id is not null and p_touched.session_id = p_room.current_session_id then
    v_current := p_touched;
    v_recount := p_delta is null;
  elsif p_any or p_touched.session_id is not null then
    select s.* into v_current from hms_private.sessions as s
    where s.room_id = p_room.id
    order by s.started_at desc nulls last, s.session_id desc
    limit 1;
    v_recount := p_any;
  end if;

  if v_current.session_id is not null then
    if v_current.session_id is distinct from p_room.current_session_id then
      if p_room.current_session_id is not null then
        update hms_private.sessions
        set peak_listeners = greatest(peak_listeners, p_room.peak_listener_count),
            peak_speakers = greatest(peak_speakers, p_room.peak_speaker_count),
            updated_at = now()
        where room_id = p_room.id and session_id = p_room.current_session_id
          and (peak_listeners < p_room.peak_listener_count or peak_speakers < p_room.peak_speaker_count);
      end if;
      v_peak_listeners := v_current.peak_listeners;
      v_peak_speakers := v_current.peak_speakers;
      v_recount := true;
    elsif not v_recount and p_delta is not null and p_touched.session_id = v_current.session_id then
      v_listeners := v_listeners + p_delta.listeners;
      v_speakers := v_speakers + p_delta.speakers;
    end if;
    if v_recount then
      select count(*) filter (where p.role_class = 'listener'), count(*) filter (where p.role_class = 'speaker')
      into v_listeners, v_speakers
      from hms_private.presence as p
      where p.room_id = p_room.id and p.session_id = v_current.session_id and p.present;
    end if;
    v_live := hms_private.session_live(v_current.session_id, v_current.closed_at,
      v_current.last_open_at, v_current.last_join_at);
    v_current_id := v_current.session_id;
    -- Peaks: the highest counts the room showed during its current session.
    v_peak_listeners := greatest(v_peak_listeners, v_listeners);
    v_peak_speakers := greatest(v_peak_speakers, v_speakers);
  end if;

  if (v_listeners, v_speakers, v_live, v_current_id, v_active, v_peak_listeners, v_peak_speakers)
      is not distinct from
     (p_room.listener_count, p_room.speaker_count, p_room.is_live, p_room.current_session_id,
      p_room.last_active_at, p_room.peak_listener_count, p_room.peak_speaker_count) then
    return p_room;
  end if;
  update public.rooms as r
  set listener_count = v_listeners,
      speaker_count = v_speakers,
      is_live = v_live,
      current_session_id = v_current_id,
      last_active_at = v_active,
      peak_listener_count = v_peak_listeners,
      peak_speaker_count = v_peak_speakers,
      trending_score = hms_private.room_score(v_listeners, v_speakers, r.featured, v_active, now(),
        w.listener_weight, w.speaker_weight, w.featured_bonus, w.half_life_hours),
      trending_rank = hms_private.trending_rank(v_listeners, v_speakers, r.featured,
        extract(epoch from v_active)::double precision,
        w.listener_weight, w.speaker_weight, w.featured_bonus, w.half_life_hours),
      updated_at = now()
  from hms_private.weights() as w
  where r.id = p_room.id
  returning r.* into v_room;
  return v_room;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- hms_apply_event: one webhook = one call = one transaction (design §6).
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
  p_auto_create boolean default false,
  p_received_at timestamptz default null,
  p_user_id text default null,
  p_user_name text default null,
  p_sent_at timestamptz default null
) returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  c_max_len constant integer := 1024;
  v_session_id text := coalesce(p_session_id, '');
  v_received_at timestamptz := coalesce(p_received_at, now());
  -- The ledger key's time: the envelope timestamp (older callers: the event's own time).
  v_sent_at timestamptz := coalesce(p_sent_at, p_event_at);
  v_is_peer boolean := p_action in ('peer_join', 'peer_leave', 'role_change');
  v_room public.rooms;
  v_session hms_private.sessions;
  v_delta hms_private.counts;
  v_recorded integer;
  v_created uuid;
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
      or not isfinite(v_received_at) or not isfinite(v_sent_at) then
    raise exception using errcode = '22023',
      message = 'hms_apply_event: p_session_started_at, p_joined_at, p_received_at and p_sent_at must be finite times';
  end if;
  if greatest(length(p_event_id), length(p_event_type), length(p_room_id), length(v_session_id),
              length(p_peer_id), length(p_role), length(p_user_id), length(p_user_name)) > c_max_len then
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

  -- The room, locked: its state changes one call at a time, in turn. Nothing is written for an
  -- unknown room, not even the ledger. Rule: a repeated event writes nothing, not even the room
  -- auto-create would make.
  perform hms_private.take_turn(p_room_id);
  select * into v_room from public.rooms where hms_room_id = p_room_id for update;
  if not found then
    if not coalesce(p_auto_create, false) then
      return jsonb_build_object('status', 'ignored', 'reason', 'unknown room', 'room', null);
    end if;
    if exists (select 1 from hms_private.events where sent_at = v_sent_at and event_id = p_event_id) then
      return jsonb_build_object('status', 'duplicate', 'reason', null, 'room', null);
    end if;
    -- A concurrent creator may win; then we wait for it and lock its row instead.
    insert into public.rooms (hms_room_id, last_active_at)
    values (p_room_id, hms_private.active_at(null, p_event_at, v_received_at))
    on conflict (hms_room_id) do nothing
    returning id into v_created;
    select * into v_room from public.rooms where hms_room_id = p_room_id for update;
  end if;

  -- Rule: an event is a duplicate when its id and envelope time are in the ledger (design §7).
  insert into hms_private.events (sent_at, event_id, event_type, action, room_id, session_id, peer_id,
    event_at, received_at)
  values (v_sent_at, p_event_id, p_event_type, p_action, v_room.id, v_session_id, p_peer_id,
    p_event_at, now())
  on conflict (sent_at, event_id) do nothing;
  get diagnostics v_recorded = row_count;
  if v_recorded = 0 then
    -- A room this call just auto-created (another call recorded the event meanwhile) goes again.
    if v_created is not null then
      delete from public.rooms where id = v_created;
      return jsonb_build_object('status', 'duplicate', 'reason', null, 'room', null);
    end if;
    return hms_private.apply_answer('duplicate', v_room);
  end if;

  -- Rule: activity only moves last_active_at; it creates no session and never changes is_live.
  if p_action <> 'activity' then
    v_session := hms_private.note_session(v_room.id, v_session_id,
      greatest(p_session_started_at, case when p_action = 'session_open' then p_event_at end),
      case when p_action = 'session_open' then p_event_at end,
      case when p_action = 'session_close' then p_event_at end,
      case when p_action in ('peer_join', 'role_change') then p_event_at end);
    if v_is_peer then
      v_delta := hms_private.note_peer(v_session, p_peer_id,
        case p_action when 'peer_join' then 'join' when 'peer_leave' then 'leave' else 'role_change' end,
        p_event_at, p_joined_at,
        case when p_action <> 'peer_leave' then p_role_class end,
        case when p_action <> 'peer_leave' then p_role end,
        null, p_user_id, p_user_name);
    end if;
  end if;
  v_room := hms_private.update_room(v_room, v_session, v_delta, p_event_at, v_received_at);
  return hms_private.apply_answer('applied', v_room);
end
$$;

comment on function public.hms_apply_event is
  'Applies one 100ms webhook event (docs/design.md §6-7); returns {status, reason, room}.';

-- ---------------------------------------------------------------------------------------------
-- hms_apply_facts: one room's snapshot from 100ms's API, in one transaction (design §6).
-- ---------------------------------------------------------------------------------------------
create or replace function hms_private.fact_time(p_fact jsonb, p_key text)
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
  v_session hms_private.sessions;
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

  perform hms_private.take_turn(p_room_id);
  select * into v_room from public.rooms where hms_room_id = p_room_id for update;
  if not found then
    return jsonb_build_object('status', 'ignored', 'reason', 'unknown room', 'room', null);
  end if;
  v_before := hms_private.room_counts(v_room);

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
      from hms_private.sessions where room_id = v_room.id and session_id = v_session_id;
      v_session := hms_private.note_session(v_room.id, v_session_id,
        hms_private.fact_time(v_fact, 'started_at'), null, hms_private.fact_time(v_fact, 'closed_at'), null);
      if coalesce(v_was_open, true) and v_session.closed_at is not null then
        v_closed := v_closed + 1;
      end if;
      v_active_at := greatest(v_active_at, hms_private.fact_time(v_fact, 'started_at'),
        hms_private.fact_time(v_fact, 'closed_at'));
    elsif v_kind = 'peer' then
      if coalesce(v_fact ->> 'peer_id', '') = '' or length(v_fact ->> 'peer_id') > c_max_len
          or length(v_fact ->> 'role') > c_max_len or length(v_fact ->> 'user_id') > c_max_len
          or length(v_fact ->> 'user_name') > c_max_len then
        raise exception using errcode = '22023', message = 'hms_apply_facts: a peer fact needs peer_id';
      end if;
      if (v_fact ->> 'role_class') not in ('listener', 'speaker', 'ignored') then
        raise exception using errcode = '22023',
          message = format('hms_apply_facts: unknown role_class %L', v_fact ->> 'role_class');
      end if;
      v_session := hms_private.note_session(v_room.id, v_session_id, null, null, null, null);
      -- A join at joined_at, a leave at left_at when present, the role observed at p_observed_at.
      perform hms_private.note_peer(v_session, v_fact ->> 'peer_id', 'observed', p_observed_at,
        hms_private.fact_time(v_fact, 'joined_at'), v_fact ->> 'role_class', v_fact ->> 'role',
        hms_private.fact_time(v_fact, 'left_at'), v_fact ->> 'user_id', v_fact ->> 'user_name');
      v_active_at := greatest(v_active_at, hms_private.fact_time(v_fact, 'joined_at'),
        hms_private.fact_time(v_fact, 'left_at'));
    else
      if jsonb_typeof(v_fact -> 'peer_ids') is distinct from 'array' then
        raise exception using errcode = '22023', message = 'hms_apply_facts: present_set needs peer_ids';
      end if;
      v_session := hms_private.note_session(v_room.id, v_session_id, null, null, null, null);
      perform hms_private.note_present_set(v_session, p_observed_at,
        array(select jsonb_array_elements_text(v_fact -> 'peer_ids')));
    end if;
  end loop;

  v_room := hms_private.update_room(v_room, null, null, v_active_at, v_received_at, true);
  return jsonb_build_object(
    'status', 'applied',
    'room', hms_private.room_json(v_room),
    'before', v_before,
    'changed', v_before is distinct from hms_private.room_counts(v_room),
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
    select distinct s.room_id from hms_private.sessions as s
    where s.closed_at is null and s.session_id <> '' and s.started_at < v_cutoff
    order by s.room_id
  loop
    select * into v_room from public.rooms where id = v_room_id for update;
    v_before := hms_private.room_counts(v_room);
    for v_expired in
      select s.session_id, s.started_at from hms_private.sessions as s
      where s.room_id = v_room_id and s.closed_at is null and s.session_id <> '' and s.started_at < v_cutoff
    loop
      perform hms_private.note_session(v_room_id, v_expired.session_id, null, null,
        v_expired.started_at + interval '12 hours', null);
      v_closed := v_closed + 1;
    end loop;
    v_room := hms_private.update_room(v_room, null, null, null, null, true);
    v_rooms := v_rooms || jsonb_build_array(jsonb_build_object(
      'hms_room_id', v_room.hms_room_id, 'before', v_before, 'room', hms_private.room_json(v_room)));
  end loop;
  return jsonb_build_object('sessions_closed', v_closed, 'rooms', v_rooms);
end
$$;

comment on function public.hms_close_expired_sessions is
  'Closes envelope sessions that started more than 12 h before p_now, at start + 12 h.';

-- ---------------------------------------------------------------------------------------------
-- The rooms triggers. The apply writes score and rank itself; these cover everyone else.
-- ---------------------------------------------------------------------------------------------

-- The app's writes to rooms (inserting a room, setting `featured`, the app's own column)
-- recompute score (as of now) and rank from the row and the settings, in the same row version.
-- The counts and last_active_at are the apply's, which computes score and rank in its own
-- UPDATE: the update trigger names only `featured`, so a webhook's write does not fire it (a
-- trigger on every update, even one whose WHEN clause is false, cost every webhook ~15-20 µs).
-- A direct write of the counts or last_active_at by anyone else is not ranked until the room's
-- next webhook. Security definer: the writer (e.g. an authenticated app user with an update policy)
-- cannot read hms_settings.
create or replace function hms_private.rooms_trending()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_w record;
begin
  select * into v_w from hms_private.weights();
  new.trending_score := hms_private.room_score(new.listener_count, new.speaker_count, new.featured,
    new.last_active_at, now(), v_w.listener_weight, v_w.speaker_weight, v_w.featured_bonus,
    v_w.half_life_hours);
  new.trending_rank := hms_private.trending_rank(new.listener_count, new.speaker_count, new.featured,
    extract(epoch from new.last_active_at)::double precision, v_w.listener_weight,
    v_w.speaker_weight, v_w.featured_bonus, v_w.half_life_hours);
  return new;
end
$$;

create or replace trigger hms_rooms_trending_insert
  before insert on public.rooms
  for each row execute function hms_private.rooms_trending();

create or replace trigger hms_rooms_trending
  before update of featured on public.rooms
  for each row
  when (old.featured is distinct from new.featured)
  execute function hms_private.rooms_trending();


-- A deleted room takes its ledger rows with it, found in one pass per DELETE statement (a hash
-- join with the deleted rows): the ledger has no room_id index (it would cost every webhook an
-- index entry). Sessions and peers go by their foreign keys.
create or replace function hms_private.rooms_deleted()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'TRUNCATE' then
    truncate hms_private.events;
    return null;
  end if;
  delete from hms_private.events as e using hms_deleted_rooms as d where e.room_id = d.id;
  return null;
end
$$;

create or replace trigger hms_rooms_deleted
  after delete on public.rooms
  referencing old table as hms_deleted_rooms
  for each statement execute function hms_private.rooms_deleted();

create or replace trigger hms_rooms_truncated
  after truncate on public.rooms
  for each statement execute function hms_private.rooms_deleted();

-- New weights or half-life re-rank every room at once. A row trigger with a WHEN clause, so that
-- re-running the migrations or an update that changes no weight rewrites no room.
create or replace function hms_private.settings_changed()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.rooms as r
  set trending_score = hms_private.room_score(r.listener_count, r.speaker_count, r.featured,
        r.last_active_at, now(), new.listener_weight, new.speaker_weight, new.featured_bonus,
        new.half_life_hours),
      trending_rank = hms_private.trending_rank(r.listener_count, r.speaker_count, r.featured,
        extract(epoch from r.last_active_at)::double precision, new.listener_weight,
        new.speaker_weight, new.featured_bonus, new.half_life_hours);
  return null;
end
$$;

create or replace trigger hms_settings_changed
  after update on public.hms_settings
  for each row
  when ((old.listener_weight, old.speaker_weight, old.featured_bonus, old.half_life_hours)
    is distinct from (new.listener_weight, new.speaker_weight, new.featured_bonus, new.half_life_hours))
  execute function hms_private.settings_changed();

-- ---------------------------------------------------------------------------------------------
-- hms_private.prune_events: the ledger only has to outlive 100ms's retries and replays. Deletes
-- rows received longer ago than p_older_than (default: hms_settings.event_retention, else 7
-- days), found through the BRIN on received_at, and returns how many. A pruned event that is
-- delivered again is applied again, which changes nothing (monotone rules). The peers of
-- envelope sessions closed longer ago than that go too, after their recap (unique participants,
-- participant seconds) is folded into the session's row.
-- ---------------------------------------------------------------------------------------------
create or replace function hms_private.prune_events(p_older_than interval default null)
returns bigint
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_keep interval := coalesce(p_older_than,
    (select event_retention from public.hms_settings where id), interval '7 days');
  v_rows bigint;
begin
  if v_keep < interval '0' then
    raise exception using errcode = '22023', message = 'hms_prune_events: p_older_than must not be negative';
  end if;
  delete from hms_private.events where received_at < now() - v_keep;
  get diagnostics v_rows = row_count;

  update hms_private.sessions as s
  set unique_participants = r.unique_participants,
      participant_seconds = r.participant_seconds,
      updated_at = now()
  from (
    select s2.room_id, s2.session_id,
      count(p.peer_id) filter (where p.seen and p.role_class in ('listener', 'speaker'))::integer
        as unique_participants,
      coalesce(sum(hms_private.peer_seconds(p.joined_at, p.left_at, s2.closed_at, now()))
        filter (where p.seen and p.role_class in ('listener', 'speaker')), 0) as participant_seconds
    from hms_private.sessions as s2
    left join hms_private.presence as p on p.room_id = s2.room_id and p.session_id = s2.session_id
    where s2.session_id <> '' and s2.closed_at < now() - v_keep and s2.unique_participants is null
    group by s2.room_id, s2.session_id
  ) as r
  where s.room_id = r.room_id and s.session_id = r.session_id;
  delete from hms_private.presence as p
  using hms_private.sessions as s
  where s.room_id = p.room_id and s.session_id = p.session_id
    and s.session_id <> '' and s.closed_at < now() - v_keep and s.unique_participants is not null;
  return v_rows;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Permissions: the entry points are for the service role only.
-- ---------------------------------------------------------------------------------------------
revoke all on function public.hms_apply_event(text, text, text, text, text, timestamptz, text, text, text,
  timestamptz, timestamptz, boolean, timestamptz, text, text, timestamptz) from public, anon, authenticated;
grant execute on function public.hms_apply_event(text, text, text, text, text, timestamptz, text, text, text,
  timestamptz, timestamptz, boolean, timestamptz, text, text, timestamptz) to service_role;
revoke all on function public.hms_apply_facts(text, timestamptz, timestamptz, jsonb) from public, anon, authenticated;
grant execute on function public.hms_apply_facts(text, timestamptz, timestamptz, jsonb) to service_role;
revoke all on function public.hms_close_expired_sessions(timestamptz) from public, anon, authenticated;
grant execute on function public.hms_close_expired_sessions(timestamptz) to service_role;

-- hms_private's functions are for the service role (the apply runs as it) and nobody else.
revoke all on all functions in schema hms_private from public, anon, authenticated;
grant execute on all functions in schema hms_private to service_role;
