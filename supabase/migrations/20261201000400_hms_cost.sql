-- hms-webhook cost per event (issue #14): what each webhook writes, brought near what the work
-- needs. `npm run bench -- --only dbcost` measures it (WAL bytes with and without full-page
-- images, rows, HOT share, backend CPU) against the floor, one `update rooms` with its trigger.
-- Idempotent, and the same on a fresh install and on an upgraded database; rooms keeps every
-- column (trending_rank included), so an app's queries keep working. This round's one current
-- definition of the feed and the prune is here (the rooms trigger's is in rules v2).
--
-- 1. rooms updates are HOT. The feed's rank key changes on every event; indexed in rooms, it made
--    every webhook a non-HOT update with a new entry in every index of rooms (the app's too). The
--    index moves to a narrow table, hms_room_rank, kept in step by a trigger in the same
--    transaction, and rooms keeps trending_rank as a plain column.
-- 2. The ledger: its event_id key and a BRIN on received_at for the prune; no other index. (The
--    random event_id key is what costs a full-page image on most inserts with full_page_writes
--    on; only a time-ordered key avoids that, and it would narrow what counts as a duplicate —
--    see bench/README.md, "database cost".)
-- 3. fillfactor leaves room on each page for the HOT updates of rooms, sessions and presence.

-- ---------------------------------------------------------------------------------------------
-- 1. The feed's rank, out of the rooms heap row.
-- ---------------------------------------------------------------------------------------------
-- One row per room, written only by the rooms triggers below, in one of two partitions: live
-- rooms and the others. Each partition's one index is the feed's order (rank desc, then id) and
-- the triggers' way to a row; the feed merges the two (Merge Append), the live-only feed reads
-- one. A room whose base is 0 (rooms.trending_rank null) has rank -infinity, so it sorts last
-- exactly as `trending_rank desc nulls last` does.
create table if not exists public.hms_room_rank (
  room_id uuid not null,
  is_live boolean not null,
  trending_rank double precision not null
) partition by list (is_live);
create table if not exists public.hms_room_rank_live
  partition of public.hms_room_rank for values in (true);
create table if not exists public.hms_room_rank_idle
  partition of public.hms_room_rank for values in (false);
create unique index if not exists hms_room_rank_live_feed_idx
  on public.hms_room_rank_live (trending_rank desc, room_id);
create unique index if not exists hms_room_rank_idle_feed_idx
  on public.hms_room_rank_idle (trending_rank desc, room_id);
-- Logical replication (Supabase runs wal_level = logical) needs a replica identity for updates.
alter table public.hms_room_rank_live replica identity using index hms_room_rank_live_feed_idx;
alter table public.hms_room_rank_idle replica identity using index hms_room_rank_idle_feed_idx;
comment on table public.hms_room_rank is
  'The trending feed''s index: (is_live, rooms.trending_rank or -infinity, rooms.id) of each room, '
  'kept by the rooms triggers; read through trending_rooms()';

-- The feed is public (it says no more than rooms does); only the triggers write. The partitions
-- are read through the parent only.
alter table public.hms_room_rank enable row level security;
alter table public.hms_room_rank_live enable row level security;
alter table public.hms_room_rank_idle enable row level security;
drop policy if exists hms_room_rank_public_read on public.hms_room_rank;
create policy hms_room_rank_public_read on public.hms_room_rank
  for select to anon, authenticated, service_role using (true);
revoke all on public.hms_room_rank, public.hms_room_rank_live, public.hms_room_rank_idle
  from public, anon, authenticated, service_role;
grant select on public.hms_room_rank to anon, authenticated, service_role;

-- Keeps a room's rank row equal to its rooms row. An update that changes neither the rank nor
-- is_live (e.g. hms_refresh_trending's score refresh) never reaches it (the trigger's WHEN).
-- Security definer: the writer of rooms (the service role, or an app user allowed to update a
-- room) cannot write hms_room_rank itself.
create or replace function public.hms_rooms_rank_sync()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_live boolean := coalesce(new.is_live, false);
  v_rank double precision := coalesce(new.trending_rank, '-Infinity');
begin
  -- The common case, same partition: found through that partition's feed index from the values
  -- the row had (written to the partition itself: routing through the parent costs several
  -- times more per row).
  if tg_op = 'UPDATE' and coalesce(old.is_live, false) = v_live and old.id = new.id then
    if v_live then
      update public.hms_room_rank_live set trending_rank = v_rank
      where trending_rank = coalesce(old.trending_rank, '-Infinity') and room_id = old.id;
    else
      update public.hms_room_rank_idle set trending_rank = v_rank
      where trending_rank = coalesce(old.trending_rank, '-Infinity') and room_id = old.id;
    end if;
    if found then
      return null;
    end if;
  end if;
  -- A room that became live or stopped being live (or a new room): its row moves. Should the
  -- row not be where the rooms row says (only if someone wrote the table or disabled the
  -- trigger), it is found by id instead, so a room never has two.
  if tg_op = 'UPDATE' then
    delete from public.hms_room_rank
    where is_live = coalesce(old.is_live, false)
      and trending_rank = coalesce(old.trending_rank, '-Infinity') and room_id = old.id;
    if not found then
      delete from public.hms_room_rank where room_id in (old.id, new.id);
    end if;
  end if;
  insert into public.hms_room_rank (room_id, is_live, trending_rank) values (new.id, v_live, v_rank);
  return null;
end
$$;

revoke all on function public.hms_rooms_rank_sync() from public, anon, authenticated;

create or replace trigger hms_rooms_rank_insert
  after insert on public.rooms
  for each row execute function public.hms_rooms_rank_sync();

create or replace trigger hms_rooms_rank_update
  after update on public.rooms
  for each row
  when ((old.trending_rank, old.is_live, old.id) is distinct from (new.trending_rank, new.is_live, new.id))
  execute function public.hms_rooms_rank_sync();

-- Every room gets its row (again: re-running this resyncs), in one transaction during which
-- room writes wait.
do $$
begin
  lock table public.rooms in share row exclusive mode;
  delete from public.hms_room_rank;
  insert into public.hms_room_rank (room_id, is_live, trending_rank)
  select id, coalesce(is_live, false), coalesce(trending_rank, '-Infinity') from public.rooms;
end
$$;

-- The rank indexes on rooms are what kept its updates from being HOT.
drop index if exists public.rooms_trending_rank_idx;
drop index if exists public.rooms_trending_rank_live_idx;

-- The public feed, same answer as before (trending_rank desc nulls last, id); its one definition
-- among this round's migrations. score_now is never more than the base score: a last_active_at
-- ahead of the clock decays from "now", it never grows. Inlinable on purpose
-- (language sql, stable, one select, no SET, not security definer): an ordered index scan of each
-- hms_room_rank partition, merged (Merge Append; the live-only feed prunes to one partition),
-- joined to rooms by id, and the LIMIT stops after the rows it needs; RLS on rooms still applies
-- to the caller.
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
    public.hms_score_from_rank(r.trending_rank,
      greatest(extract(epoch from now()), extract(epoch from r.last_active_at))::double precision,
      (select public.hms_half_life_hours())) as score_now
  from public.hms_room_rank as k
  join public.rooms as r on r.id = k.room_id
  where k.is_live or not coalesce(p_live_only, false)
  order by k.trending_rank desc, k.room_id
  limit least(greatest(coalesce(p_limit, 20), 0), 1000)
  offset greatest(coalesce(p_offset, 0), 0)
$$;

grant execute on function public.trending_rooms(integer, integer, boolean)
  to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- 2. The ledger keeps one b-tree, its event_id key (a repeated id is a duplicate whatever its
--    payload, design §7). The prune finds old rows through a BRIN on received_at (rows arrive in
--    that order: one range per 128 pages, almost nothing to maintain per insert). No room_id
--    index: the ledger is read by event id; deleting rooms (rare) scans it once per statement
--    (the rooms delete trigger above) instead of every webhook paying an index entry.
-- ---------------------------------------------------------------------------------------------
drop index if exists public.hms_events_room_idx;
drop index if exists public.hms_events_received_at_idx;
create index if not exists hms_events_received_at_brin
  on public.hms_events using brin (received_at);

-- hms_prune_events: the ledger only has to outlive 100ms's retries and replays. Deletes rows
-- received longer ago than p_older_than (default: hms_settings.event_retention, else 7 days),
-- found through the BRIN above. A pruned event that is delivered again is applied again, which
-- changes nothing (monotone rules). Replaces the first build's version (in its core migration),
-- which read the settings through dynamic SQL because the core runs before hms_settings exists.
create or replace function public.hms_prune_events(p_older_than interval default null)
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
  delete from public.hms_events where received_at < now() - v_keep;
  get diagnostics v_rows = row_count;
  return v_rows;
end
$$;

revoke all on function public.hms_prune_events(interval) from public, anon, authenticated;
grant execute on function public.hms_prune_events(interval) to service_role;

-- A deleted room takes its rank row and its ledger rows with it, found in one pass per DELETE
-- statement (a hash join with the deleted rows) instead of a foreign-key cascade per row: neither
-- table has (or needs, for anything else) a room_id index, and a per-row cascade without one
-- would scan the table once per deleted room.
alter table public.hms_events drop constraint if exists hms_events_room_id_fkey;

create or replace function public.hms_rooms_deleted()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'TRUNCATE' then
    truncate public.hms_room_rank, public.hms_events;
    return null;
  end if;
  delete from public.hms_room_rank as k using hms_deleted_rooms as d where k.room_id = d.id;
  delete from public.hms_events as e using hms_deleted_rooms as d where e.room_id = d.id;
  return null;
end
$$;

revoke all on function public.hms_rooms_deleted() from public, anon, authenticated;

create or replace trigger hms_rooms_deleted
  after delete on public.rooms
  referencing old table as hms_deleted_rooms
  for each statement execute function public.hms_rooms_deleted();

create or replace trigger hms_rooms_truncated
  after truncate on public.rooms
  for each statement execute function public.hms_rooms_deleted();

-- ---------------------------------------------------------------------------------------------
-- 3. Room on each page for HOT updates (new pages; existing ones as they are rewritten). rooms
--    rows change on every event, a session's on most, a peer's on its leave and role changes.
-- ---------------------------------------------------------------------------------------------
alter table public.rooms set (fillfactor = 70);
alter table public.hms_sessions set (fillfactor = 80);
alter table public.hms_presence set (fillfactor = 90);
