-- hms-webhook trending (docs/design.md §8): the settings row, the score and rank functions (the
-- SQL twin of tests/support/trending.rs), the rooms trigger that keeps score and rank current, the public
-- feed trending_rooms(), the refresh and the pg_cron jobs. Idempotent: applying it twice is a no-op.

-- ---------------------------------------------------------------------------------------------
-- Settings: exactly one row (id is always true). The bounds keep every score finite and the
-- NUMERIC(10,2) column from overflowing for realistic counts; NaN fails them too.
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
  updated_at timestamptz not null default now()
);
insert into public.hms_settings (id) values (true) on conflict (id) do nothing;

alter table public.hms_settings enable row level security;
revoke all on public.hms_settings from public, anon, authenticated;
grant select, update on public.hms_settings to service_role;

-- ---------------------------------------------------------------------------------------------
-- Score: base × 0.5^(max(0, hours) / half_life), computed in float8 and then cast to numeric and
-- rounded to 2 decimals (half away from zero), exactly what tests/support/trending.rs `score` reproduces.
-- Ages past 1000 half-lives and bases below 1e-200 are answered 0 directly: the result rounds to
-- 0.00 anyway, and PostgreSQL raises "value out of range: underflow" where Rust returns 0.
-- These helpers are PL/pgSQL on purpose: the rooms trigger runs on every webhook, and PL/pgSQL
-- keeps its plans for the session while a non-inlined SQL function is re-planned per transaction.
-- ---------------------------------------------------------------------------------------------
create or replace function public.hms_trending_score(
  p_listeners bigint,
  p_speakers bigint,
  p_featured boolean,
  p_hours double precision,
  p_listener_weight double precision default 1,
  p_speaker_weight double precision default 3,
  p_featured_bonus double precision default 5,
  p_half_life_hours double precision default 6
) returns numeric
language plpgsql
immutable
parallel safe
as $$
declare
  v_base double precision := coalesce(p_listeners, 0)::double precision * p_listener_weight
    + coalesce(p_speakers, 0)::double precision * p_speaker_weight
    + case when coalesce(p_featured, false) then p_featured_bonus else 0 end;
  v_expo double precision;
begin
  -- Like Rust: an unusable half-life scores 0 instead of dividing by zero.
  if not (p_half_life_hours > 0 and p_half_life_hours < 'Infinity'::double precision) then
    return 0;
  end if;
  -- Negative, unknown or NaN ages count as "just now" (NaN > 0 is true in PostgreSQL).
  v_expo := case when p_hours > 0 and p_hours <> 'NaN'::double precision then p_hours else 0 end
    / p_half_life_hours;
  if not (v_base > 1e-200) or v_expo > 1000 then
    return 0;
  end if;
  return round((v_base * power(0.5::double precision, v_expo))::numeric, 2);
end
$$;

-- Rank key: log2(base) + epoch / (half_life × 3600), null when base is 0 (or the result is not
-- finite). Ordering by it equals ordering by the decayed score at every instant, and it never
-- changes while the row does not.
create or replace function public.hms_trending_rank(
  p_listeners bigint,
  p_speakers bigint,
  p_featured boolean,
  p_last_active_epoch double precision,
  p_listener_weight double precision default 1,
  p_speaker_weight double precision default 3,
  p_featured_bonus double precision default 5,
  p_half_life_hours double precision default 6
) returns double precision
language plpgsql
immutable
parallel safe
as $$
declare
  v_base double precision := coalesce(p_listeners, 0)::double precision * p_listener_weight
    + coalesce(p_speakers, 0)::double precision * p_speaker_weight
    + case when coalesce(p_featured, false) then p_featured_bonus else 0 end;
  v_key double precision;
begin
  if not (v_base > 0 and v_base < 'Infinity'::double precision and p_half_life_hours > 0)
      or p_last_active_epoch is null then
    return null;
  end if;
  v_key := ln(v_base) / ln(2::double precision) + p_last_active_epoch / (p_half_life_hours * 3600);
  if v_key in ('Infinity'::double precision, '-Infinity'::double precision, 'NaN'::double precision) then
    return null;
  end if;
  return v_key;
end
$$;

-- The stored score of a room as of p_now; a room with no last_active_at scores 0. Clamped to what
-- NUMERIC(10,2) holds so an absurd count can never make a webhook fail.
create or replace function public.hms_room_score(
  p_listeners bigint,
  p_speakers bigint,
  p_featured boolean,
  p_last_active_at timestamptz,
  p_now timestamptz,
  p_listener_weight double precision,
  p_speaker_weight double precision,
  p_featured_bonus double precision,
  p_half_life_hours double precision
) returns numeric
language plpgsql
stable
parallel safe
as $$
begin
  if p_last_active_at is null then
    return 0;
  end if;
  return least(public.hms_trending_score(p_listeners, p_speakers, p_featured,
      ((extract(epoch from p_now) - extract(epoch from p_last_active_at)) / 3600)::double precision,
      p_listener_weight, p_speaker_weight, p_featured_bonus, p_half_life_hours),
    99999999.99);
end
$$;

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

-- Decayed score at p_now_epoch from a rank key: 2^(rank - now / (half_life × 3600)).
create or replace function public.hms_score_from_rank(
  p_rank double precision,
  p_now_epoch double precision,
  p_half_life_hours double precision
) returns numeric
language sql
immutable
parallel safe
as $$
  select case
    when p_rank is null then 0::numeric
    when p_rank - p_now_epoch / (p_half_life_hours * 3600) < -1000 then 0::numeric
    else round(power(2::double precision,
      least(p_rank - p_now_epoch / (p_half_life_hours * 3600), 1000))::numeric, 2)
  end
$$;

-- ---------------------------------------------------------------------------------------------
-- rooms: the rank column and the feed's indexes. `id` is the tie-break of the feed's order, so it
-- is in the index too and a LIMIT reads only the first rows of the index.
-- ---------------------------------------------------------------------------------------------
alter table public.rooms add column if not exists trending_rank double precision;
create index if not exists rooms_trending_rank_idx
  on public.rooms (trending_rank desc nulls last, id);
create index if not exists rooms_trending_rank_live_idx
  on public.rooms (trending_rank desc nulls last, id) where is_live;

-- Every write to a room recomputes its score (as of now) and rank from the row and the settings,
-- so the app setting `featured` (or anything else) is reflected at once. Security definer: the
-- writer (e.g. an authenticated app user with an update policy) cannot read hms_settings.
create or replace function public.hms_rooms_trending()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_wl double precision := 1;
  v_ws double precision := 3;
  v_fb double precision := 5;
  v_hl double precision := 6;
begin
  select listener_weight, speaker_weight, featured_bonus, half_life_hours
  into v_wl, v_ws, v_fb, v_hl
  from public.hms_settings where id;
  new.trending_score := public.hms_room_score(new.listener_count, new.speaker_count, new.featured,
    new.last_active_at, now(), v_wl, v_ws, v_fb, v_hl);
  new.trending_rank := public.hms_trending_rank(new.listener_count, new.speaker_count, new.featured,
    extract(epoch from new.last_active_at)::double precision, v_wl, v_ws, v_fb, v_hl);
  return new;
end
$$;

create or replace trigger hms_rooms_trending
  before insert or update on public.rooms
  for each row execute function public.hms_rooms_trending();

-- New weights or half-life re-rank every room (the no-op update fires the rooms trigger). A row
-- trigger with a WHEN clause, so that re-running this migration (whose insert does nothing) or an
-- update that changes no weight does not rewrite every room.
create or replace function public.hms_settings_changed()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.rooms set trending_score = trending_score;
  return null;
end
$$;

create or replace trigger hms_settings_changed
  after update on public.hms_settings
  for each row
  when ((old.listener_weight, old.speaker_weight, old.featured_bonus, old.half_life_hours)
    is distinct from (new.listener_weight, new.speaker_weight, new.featured_bonus, new.half_life_hours))
  execute function public.hms_settings_changed();

-- ---------------------------------------------------------------------------------------------
-- The public feed. Inlinable on purpose (language sql, stable, one select, no SET, not security
-- definer): `select * from trending_rooms(20)` plans as an index scan on rooms_trending_rank_idx
-- with a LIMIT, and RLS on rooms still applies to the caller.
-- ---------------------------------------------------------------------------------------------
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
    public.hms_score_from_rank(r.trending_rank, extract(epoch from now())::double precision,
      (select public.hms_half_life_hours())) as score_now
  from public.rooms as r
  where (not coalesce(p_live_only, false) or r.is_live)
  order by r.trending_rank desc nulls last, r.id
  limit least(greatest(coalesce(p_limit, 20), 0), 1000)
  offset greatest(coalesce(p_offset, 0), 0)
$$;

grant execute on function public.trending_rooms(integer, integer, boolean)
  to anon, authenticated, service_role;
grant execute on function public.hms_half_life_hours() to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- hms_refresh_trending: brings stored scores to now. Ranks do not decay, so only rows whose
-- rounded score actually changes are rewritten. Returns how many were.
-- ---------------------------------------------------------------------------------------------
create or replace function public.hms_refresh_trending()
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
    select r2.id, public.hms_room_score(r2.listener_count, r2.speaker_count, r2.featured,
      r2.last_active_at, now(), st.listener_weight, st.speaker_weight, st.featured_bonus,
      st.half_life_hours) as score
    from public.rooms as r2
    cross join (
      select coalesce(max(listener_weight), 1) as listener_weight,
        coalesce(max(speaker_weight), 3) as speaker_weight,
        coalesce(max(featured_bonus), 5) as featured_bonus,
        coalesce(max(half_life_hours), 6) as half_life_hours
      from public.hms_settings where id
    ) as st
  ) as s
  where r.id = s.id and r.trending_score is distinct from s.score;
  get diagnostics v_rows = row_count;
  return v_rows;
end
$$;

revoke all on function public.hms_refresh_trending() from public, anon, authenticated;
grant execute on function public.hms_refresh_trending() to service_role;

-- ---------------------------------------------------------------------------------------------
-- hms_schedule_jobs: with pg_cron, refresh the scores every 5 minutes and prune the ledger daily
-- (cron.schedule upserts by job name, so calling this again is harmless). Without pg_cron it only
-- says so: the feed stays correct (it decays at read time), only stored scores age.
-- ---------------------------------------------------------------------------------------------
create or replace function public.hms_schedule_jobs()
returns text
language plpgsql
security invoker
set search_path = ''
as $$
begin
  if not exists (select 1 from pg_catalog.pg_extension where extname = 'pg_cron') then
    raise notice 'pg_cron is not installed: hms-refresh-trending and hms-prune-events are not scheduled '
      '(enable pg_cron, then run select public.hms_schedule_jobs())';
    return 'pg_cron not installed: nothing scheduled';
  end if;
  perform cron.schedule('hms-refresh-trending', '*/5 * * * *', 'select public.hms_refresh_trending()');
  perform cron.schedule('hms-prune-events', '17 3 * * *', 'select public.hms_prune_events()');
  return 'scheduled hms-refresh-trending (*/5 * * * *) and hms-prune-events (17 3 * * *)';
end
$$;

revoke all on function public.hms_schedule_jobs() from public, anon, authenticated;
grant execute on function public.hms_schedule_jobs() to service_role;

select public.hms_schedule_jobs();

-- Rooms that existed before this migration get their score and rank once; a second run finds
-- nothing to change.
update public.rooms as r
set trending_score = r.trending_score
where r.trending_rank is distinct from public.hms_trending_rank(r.listener_count, r.speaker_count,
  r.featured, extract(epoch from r.last_active_at)::double precision,
  (select listener_weight from public.hms_settings where id),
  (select speaker_weight from public.hms_settings where id),
  (select featured_bonus from public.hms_settings where id),
  (select half_life_hours from public.hms_settings where id));
