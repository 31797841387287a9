-- hms-webhook feed (docs/design.md §8-9): the public trending feed trending_rooms(), the stage and
-- recap views (room_participants, room_sessions), the score refresh and the pg_cron jobs.
-- Idempotent.

-- ---------------------------------------------------------------------------------------------
-- The feed's order is (trending_rank desc nulls last, id). The indexes hold only the rank's band,
-- floor(trending_rank) (rooms.trending_rank_band, a generated column): it changes when a room's
-- decayed score doubles or halves, so nearly every webhook's rooms update leaves the indexes alone
-- and stays HOT, yet an ordered scan of the bands reads the rooms in feed order band by band, and
-- an incremental sort orders each band by the exact rank. A read costs the rooms of the bands it
-- reaches (what the feed's first page shares its band with), not the whole table. The live-only
-- feed reads the same index and skips idle rooms, which rank last anyway (an idle room has no
-- counts, so no rank unless it is featured): one index fewer to write when a band changes.
-- ---------------------------------------------------------------------------------------------
create index if not exists rooms_trending_band_idx
  on public.rooms (trending_rank_band desc nulls last);

-- Every room has its rank from the start, rooms an app had before these migrations included (a
-- second run finds nothing to change).
update public.rooms as r
set trending_rank = hms_private.trending_rank(r.listener_count, r.speaker_count, r.featured,
      extract(epoch from r.last_active_at)::double precision, w.listener_weight, w.speaker_weight,
      w.featured_bonus, w.half_life_hours)
from hms_private.weights() as w
where r.trending_rank is distinct from hms_private.trending_rank(r.listener_count, r.speaker_count,
  r.featured, extract(epoch from r.last_active_at)::double precision, w.listener_weight,
  w.speaker_weight, w.featured_bonus, w.half_life_hours);

-- The feed needs the half-life but hms_settings is closed to the API roles; this exposes only it.
create or replace function public.hms_half_life_hours()
returns double precision
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce((select half_life_hours from public.hms_settings where id), 6::double precision)
$$;

-- The public feed. score_now is the score decayed to now (never more than the base score: a
-- last_active_at ahead of the clock decays from "now"). Inlinable on purpose (language sql,
-- stable, one select, no SET, not security definer): an ordered scan of a band index, an
-- incremental sort inside each band, and the LIMIT stops after the rows it needs. It reads rooms
-- as the caller, so RLS on rooms decides which rooms a role sees in the feed too.
create or replace function public.trending_rooms(
  p_limit integer default 20,
  p_offset integer default 0,
  p_live_only boolean default false
) returns table (
  id uuid,
  hms_room_id text,
  is_live boolean,
  listener_count integer,
  speaker_count integer,
  last_active_at timestamptz,
  trending_score numeric,
  featured boolean,
  trending_rank double precision,
  score_now numeric
)
language sql
stable
as $$
  select r.id, r.hms_room_id, r.is_live, r.listener_count, r.speaker_count, r.last_active_at,
    r.trending_score, r.featured, r.trending_rank,
    -- Rule: the score decayed to now is 2^(rank - now / (half_life × 3600)), 0 without a rank
    -- and once it is below 2^-1000.
    case
      when r.trending_rank is null or d.exponent < -1000 then 0::numeric
      else round(power(2::double precision, least(d.exponent, 1000))::numeric, 2)
    end as score_now
  from public.rooms as r
  cross join lateral (
    select r.trending_rank
      - greatest(extract(epoch from now()), extract(epoch from r.last_active_at))::double precision
        / ((select public.hms_half_life_hours()) * 3600) as exponent
  ) as d
  where r.is_live or not coalesce(p_live_only, false)
  order by r.trending_rank_band desc nulls last, r.trending_rank desc nulls last, r.id
  limit least(greatest(coalesce(p_limit, 20), 0), 1000)
  offset greatest(coalesce(p_offset, 0), 0)
$$;

grant execute on function public.trending_rooms(integer, integer, boolean)
  to anon, authenticated, service_role;
grant execute on function public.hms_half_life_hours() to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Stage and recap (design §9.1). Both are views that run as the caller (security_invoker), so
-- the rooms read policy applies, over security-definer functions that apply the privacy defaults:
--   authenticated reads the speakers of every room; listeners only with
--   hms_settings.listeners_visible; anon nothing (an app grants it by granting select on the
--   views to anon); the service role everything.
-- ---------------------------------------------------------------------------------------------

-- Whether the caller acts as the service role (or a member of it, e.g. a superuser). Read from
-- the role the caller set (PostgREST sets the request's role), which a security-definer function
-- does not change, else the login role.
create or replace function hms_private.caller_is_service()
returns boolean
language sql
stable
as $$
  select pg_catalog.pg_has_role(
    coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user), 'service_role', 'member')
$$;

-- The peers present in one session of a room that the caller may see: speakers; listeners with
-- hms_settings.listeners_visible or for the service role. Ignored roles never appear, and a
-- closed session has no present peer. Per room, so that a read costs only the rooms it reads.
create or replace function hms_private.room_participants(p_room uuid, p_session_id text)
returns table (peer_id text, user_id text, user_name text, role text, role_class text,
  joined_at timestamptz)
language sql
stable
security definer
set search_path = ''
as $$
  select p.peer_id, p.user_id, p.user_name, p.role, p.role_class, p.joined_at
  from hms_private.presence as p
  where p.room_id = p_room and p.session_id = p_session_id and p.present
    and (p.role_class = 'speaker'
      or (p.role_class = 'listener'
        and (coalesce((select s.listeners_visible from public.hms_settings as s where s.id), false)
          or hms_private.caller_is_service())))
$$;

create or replace view public.room_participants with (security_invoker = true) as
  select r.id as room_id, r.hms_room_id, p.peer_id, p.user_id, p.user_name, p.role, p.role_class,
    p.joined_at
  from public.rooms as r
  cross join lateral hms_private.room_participants(r.id, r.current_session_id) as p
  where r.current_session_id is not null;

-- One row per session: when it ran, its peaks (the highest counts the room showed while it was
-- the current session), and its participants (distinct peers of a listener or speaker role) and
-- their summed time present. The recap is derived from the peers' rows until they are pruned,
-- then read from what the prune folded into the session's row.
create or replace function hms_private.room_sessions(p_room uuid)
returns table (session_id text, started_at timestamptz, ended_at timestamptz,
  peak_listeners integer, peak_speakers integer, unique_participants integer,
  participant_seconds numeric)
language sql
stable
security definer
set search_path = ''
as $$
  select s.session_id, s.started_at, s.closed_at,
    case when r.current_session_id = s.session_id
      then greatest(s.peak_listeners, r.peak_listener_count) else s.peak_listeners end,
    case when r.current_session_id = s.session_id
      then greatest(s.peak_speakers, r.peak_speaker_count) else s.peak_speakers end,
    coalesce(s.unique_participants, agg.unique_participants, 0),
    coalesce(s.participant_seconds, agg.participant_seconds, 0)
  from hms_private.sessions as s
  join public.rooms as r on r.id = s.room_id
  left join lateral (
    select count(*)::integer as unique_participants,
      sum(hms_private.peer_seconds(p.joined_at, p.left_at, s.closed_at, now()))
        as participant_seconds
    from hms_private.presence as p
    where p.room_id = s.room_id and p.session_id = s.session_id and p.seen
      and p.role_class in ('listener', 'speaker')
  ) as agg on s.unique_participants is null
  where s.room_id = p_room
$$;

create or replace view public.room_sessions with (security_invoker = true) as
  select r.id as room_id, r.hms_room_id, s.session_id, s.started_at, s.ended_at, s.peak_listeners,
    s.peak_speakers, s.unique_participants, s.participant_seconds
  from public.rooms as r
  cross join lateral hms_private.room_sessions(r.id) as s;

revoke all on public.room_participants, public.room_sessions from public, anon, authenticated;
grant select on public.room_participants, public.room_sessions to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- hms_private.refresh_trending: brings stored scores to now. Ranks do not decay, so only rows
-- whose rounded score actually changes are rewritten. Returns how many were.
-- ---------------------------------------------------------------------------------------------
create or replace function hms_private.refresh_trending()
returns bigint
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_rows bigint;
begin
  update public.rooms as r
  set trending_score = s.score
  from (
    select r2.id, hms_private.room_score(r2.listener_count, r2.speaker_count, r2.featured,
      r2.last_active_at, now(), w.listener_weight, w.speaker_weight, w.featured_bonus,
      w.half_life_hours) as score
    from public.rooms as r2
    cross join hms_private.weights() as w
  ) as s
  where r.id = s.id and r.trending_score is distinct from s.score;
  get diagnostics v_rows = row_count;
  return v_rows;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- hms_schedule_jobs (operators, service role only): with pg_cron, refresh the scores every 5 minutes and prune the
-- ledger daily (cron.schedule upserts by job name, so calling this again is harmless; both
-- schedules are minute-level, which pg_cron 1.4 and 1.6 accept). Without pg_cron it only says
-- so: the feed stays correct (it decays at read time), only stored scores age.
-- ---------------------------------------------------------------------------------------------
create or replace function public.hms_schedule_jobs()
returns text
language plpgsql
security invoker
set search_path = ''
as $$
begin
  if to_regprocedure('cron.schedule(text,text,text)') is null then
    raise notice 'pg_cron is not installed: hms-refresh-trending and hms-prune-events are not scheduled '
      '(enable pg_cron, then run select public.hms_schedule_jobs())';
    return 'pg_cron not installed: nothing scheduled';
  end if;
  perform cron.schedule('hms-refresh-trending', '*/5 * * * *', 'select hms_private.refresh_trending()');
  perform cron.schedule('hms-prune-events', '17 3 * * *', 'select hms_private.prune_events()');
  return 'scheduled hms-refresh-trending (*/5 * * * *) and hms-prune-events (17 3 * * *)';
end
$$;

revoke all on function public.hms_schedule_jobs() from public, anon, authenticated;
grant execute on function public.hms_schedule_jobs() to service_role;

select public.hms_schedule_jobs();

revoke all on all functions in schema hms_private from public, anon, authenticated;
grant execute on all functions in schema hms_private to service_role;
-- authenticated may look up the functions behind the two views in hms_private, and nothing else
-- there.
grant usage on schema hms_private to authenticated;
grant execute on function hms_private.caller_is_service() to authenticated;
grant execute on function hms_private.room_participants(uuid, text) to authenticated;
grant execute on function hms_private.room_sessions(uuid) to authenticated;
