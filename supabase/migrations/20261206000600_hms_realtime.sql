-- hms-webhook realtime (docs/live.md, "Live updates"): how an app receives every
-- committed change of a room's is_live, counts, last_active_at and trending fields through
-- Supabase Realtime, without anything of hms_private leaving the
-- database. One setting, hms_settings.realtime, chooses the path:
--   'postgres_changes' (default) public.rooms, and only it, is in the supabase_realtime
--                      publication. Costs no write and no WAL byte per webhook: Realtime decodes
--                      the rooms UPDATE the webhook writes anyway, and checks each subscriber
--                      against the rooms read policy (RLS and column grants) before sending.
--   'broadcast'        a rooms trigger calls realtime.send() (Broadcast from the database) on a
--                      private topic per room, 'hms:room:<hms_room_id>', and on 'hms:rooms',
--                      coalesced to at most one message per topic per realtime_interval_ms; a
--                      flush (pg_cron, every second; its run log is kept to an hour) sends the
--                      last state of a burst. For busy rooms and big audiences. Costs a
--                      realtime.messages row per message.
--   'off'              nothing is published.
-- Works on Supabase and on a plain PostgreSQL (no publication yet: one is created; no realtime
-- schema: 'broadcast' is refused with a clear error). Idempotent, and re-running it keeps the
-- mode the app chose.

-- The setting (hms_settings.realtime and realtime_interval_ms) and the coalescing state in rooms
-- (realtime_sent_at, realtime_pending: kept in the row the webhook writes anyway, not indexed) are
-- in the schema migration. Changing the setting takes effect at once through the
-- hms_settings_realtime trigger below.

-- ---------------------------------------------------------------------------------------------
-- Broadcast: the message a subscriber receives, the trigger that sends it, and the flush.
-- ---------------------------------------------------------------------------------------------

-- BEFORE trigger, named to fire after hms_rooms_trending (triggers fire in name order), so the
-- message carries the final score and rank, and the coalescing state is written in the same row
-- version. Rules:
--   1. An update that changes none of the payload's fields sends nothing (a flush always sends).
--   2. A room sends at most once per realtime_interval_ms (wall clock, under the row lock that
--      every writer of the row holds): a change inside the interval only sets realtime_pending.
--   3. A send goes to the room's topic and to the all-rooms topic, private (Realtime checks the
--      hms_* policies on realtime.messages when a client joins).
-- realtime.send is called only here, inside the writer's transaction: a rolled-back webhook
-- sends nothing. Supabase's realtime.send turns its own failures into a warning, so a Realtime
-- problem never fails a webhook.
create or replace function hms_private.rooms_realtime()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_flush boolean := tg_op = 'UPDATE' and old.realtime_pending and not new.realtime_pending;
  v_now timestamptz := clock_timestamp();
  v_interval interval;
  v_payload jsonb;
begin
  -- 1. Nothing a subscriber sees changed.
  if tg_op = 'UPDATE' and not v_flush
      and (new.hms_room_id, new.is_live, new.listener_count, new.speaker_count,
           new.last_active_at, new.trending_score, new.trending_rank, new.featured)
          is not distinct from
          (old.hms_room_id, old.is_live, old.listener_count, old.speaker_count,
           old.last_active_at, old.trending_score, old.trending_rank, old.featured) then
    return new;
  end if;
  -- 2. Coalesce: inside the interval only remember that the latest state is unsent.
  select make_interval(secs => s.realtime_interval_ms / 1000.0) into v_interval
  from public.hms_settings s where s.id;
  if tg_op = 'UPDATE' and old.realtime_sent_at is not null
      and v_now < old.realtime_sent_at + coalesce(v_interval, interval '1 second') then
    new.realtime_pending := true;
    return new;
  end if;
  -- 3. Send the row as it will be committed.
  -- The fields the app shows, nothing else; trending_rank lets a client compute the decayed
  -- score itself: 2^(rank - now_epoch / (half_life_hours × 3600)).
  v_payload := jsonb_build_object(
    'hms_room_id', new.hms_room_id,
    'is_live', coalesce(new.is_live, false),
    'listener_count', coalesce(new.listener_count, 0),
    'speaker_count', coalesce(new.speaker_count, 0),
    'last_active_at',
      to_char(new.last_active_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'trending_score', coalesce(new.trending_score, 0),
    'trending_rank', new.trending_rank,
    'featured', coalesce(new.featured, false)
  );
  perform realtime.send(v_payload, 'room', 'hms:room:' || new.hms_room_id, true);
  perform realtime.send(v_payload, 'room', 'hms:rooms', true);
  new.realtime_sent_at := v_now;
  new.realtime_pending := false;
  return new;
end
$$;

-- The trailing edge of a burst: sends the latest state of every room whose last change was
-- coalesced and whose interval has passed. Rooms a webhook holds right now are skipped (their
-- next event or the next flush sends them). Returns how many rooms were flushed.
create or replace function hms_private.realtime_flush()
returns bigint
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_interval interval;
  v_rows bigint;
begin
  select make_interval(secs => s.realtime_interval_ms / 1000.0) into v_interval
  from public.hms_settings s where s.id;
  with due as (
    select r.id from public.rooms r
    where r.realtime_pending
      and r.realtime_sent_at <= clock_timestamp() - coalesce(v_interval, interval '1 second')
    for update skip locked
  )
  update public.rooms r set realtime_pending = false from due where r.id = due.id;
  get diagnostics v_rows = row_count;
  return v_rows;
end
$$;

-- Broadcast authorization happens once, when a client joins a topic, not per message, so the
-- topic policies below only let a role join what the rooms read policy lets it read at all times:
-- every column of the payload (column grants), and for the all-rooms topic every row (rooms has
-- no row security for the role, or only a permissive policy `using (true)` and no restrictive
-- one). Conservative: a role it cannot prove that for is refused (it can still use a room topic
-- or Postgres Changes, which Realtime checks per change).
create or replace function public.hms_realtime_may_read_payload()
returns boolean
language sql
stable
security invoker
set search_path = ''
as $$
  select bool_and(pg_catalog.has_column_privilege('public.rooms', c, 'SELECT'))
  from unnest(array['hms_room_id', 'is_live', 'listener_count', 'speaker_count',
    'last_active_at', 'trending_score', 'trending_rank', 'featured']) as c
$$;

create or replace function public.hms_realtime_may_read_all_rooms()
returns boolean
language sql
stable
security invoker
set search_path = ''
as $$
  select public.hms_realtime_may_read_payload()
    and (
      not (select c.relrowsecurity from pg_catalog.pg_class c where c.oid = 'public.rooms'::regclass)
      or (
        exists (select 1 from pg_catalog.pg_policies p
          where p.schemaname = 'public' and p.tablename = 'rooms' and p.permissive = 'PERMISSIVE'
            and p.cmd in ('SELECT', 'ALL') and p.qual = 'true'
            and p.roles && array[current_user, 'public']::name[])
        and not exists (select 1 from pg_catalog.pg_policies p
          where p.schemaname = 'public' and p.tablename = 'rooms' and p.permissive = 'RESTRICTIVE'
            and p.cmd in ('SELECT', 'ALL')
            and p.roles && array[current_user, 'public']::name[])
      )
    )
$$;

-- ---------------------------------------------------------------------------------------------
-- hms_realtime_apply: makes the database match hms_settings.realtime. Called by this migration
-- and whenever the setting changes. Returns what it did.
-- ---------------------------------------------------------------------------------------------
create or replace function hms_private.realtime_apply()
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  c_pub constant text := 'supabase_realtime';
  v_mode text;
  v_pub record;
  v_published boolean;
  v_has_send boolean := to_regprocedure('realtime.send(jsonb, text, text, boolean)') is not null;
  v_has_messages boolean := to_regclass('realtime.messages') is not null;
  -- pg_cron is recognised by the documented function this calls, as the reconcile migration does.
  v_has_cron boolean := to_regprocedure('cron.schedule(text,text,text)') is not null;
  -- pg_cron logs every run in cron.job_run_details and never deletes a row (https://github.com/citusdata/pg_cron; the only
  -- switch, cron.log_run, is server-wide): the every-second flush would add 86,400 rows a day.
  -- An hourly job of its own deletes both jobs' rows older than an hour, the clean-up pg_cron's
  -- documentation gives (a scheduled delete from cron.job_run_details by end_time).
  c_history constant text := 'delete from cron.job_run_details where jobid in (select jobid from cron.job'
    || ' where jobname in (''hms-realtime-flush'', ''hms-realtime-flush-history''))'
    || ' and end_time < now() - interval ''1 hour''';
  v_done text[] := '{}'::text[];
begin
  select s.realtime into v_mode from public.hms_settings s where s.id;
  v_mode := coalesce(v_mode, 'postgres_changes');

  -- Postgres Changes: rooms in the publication exactly when the mode says so. The publication is
  -- created when missing (plain PostgreSQL); a publication nobody subscribes to costs nothing.
  select p.pubname, p.puballtables into v_pub from pg_catalog.pg_publication p where p.pubname = c_pub;
  if not found and v_mode = 'postgres_changes' then
    begin
      execute format('create publication %I', c_pub);
      v_done := array_append(v_done, format('created publication %s', c_pub));
    exception when insufficient_privilege then
      raise warning 'hms_realtime: cannot create publication % (%): rooms are not published', c_pub, sqlerrm;
    end;
  end if;
  select p.pubname, p.puballtables into v_pub from pg_catalog.pg_publication p where p.pubname = c_pub;
  if found then
    v_published := exists (select 1 from pg_catalog.pg_publication_tables t
      where t.pubname = c_pub and t.schemaname = 'public' and t.tablename = 'rooms');
    if v_pub.puballtables or exists (select 1 from pg_catalog.pg_publication_namespace n
        join pg_catalog.pg_publication p on p.oid = n.pnpubid
        where p.pubname = c_pub and n.pnnspid in ('public'::regnamespace, 'hms_private'::regnamespace)) then
      -- Cannot be narrowed from here (PostgreSQL 15 has no EXCEPT): say it loudly.
      raise warning 'hms_realtime: publication % publishes every table of a schema, including hms_private.presence, hms_private.sessions and hms_private.events or hms_settings', c_pub
        using hint = 'recreate it with explicit tables: drop publication supabase_realtime; create publication supabase_realtime; then select hms_private.realtime_apply()';
    elsif v_mode = 'postgres_changes' and not v_published and not exists (
        select 1 from pg_catalog.pg_class c where c.oid = 'public.rooms'::regclass
          and (c.relreplident = 'f'
            or (c.relreplident = 'i' and exists (select 1 from pg_catalog.pg_index i
              where i.indrelid = c.oid and i.indisreplident))
            or (c.relreplident = 'd' and exists (select 1 from pg_catalog.pg_index i
              where i.indrelid = c.oid and i.indisprimary)))) then
      -- A published table without a replica identity refuses every UPDATE (SQLSTATE 55000):
      -- that would stop the webhook, so such a rooms table (an app's, without a primary key)
      -- is left unpublished.
      raise warning 'hms_realtime: public.rooms has no replica identity (no primary key): not published'
        using hint = 'add a primary key to rooms (or alter table rooms replica identity full), then select hms_private.realtime_apply()';
    elsif v_mode = 'postgres_changes' and not v_published then
      begin
        execute format('alter publication %I add table public.rooms', c_pub);
        v_done := array_append(v_done, 'published public.rooms');
      exception when insufficient_privilege then
        raise warning 'hms_realtime: cannot add public.rooms to % (%)', c_pub, sqlerrm;
      end;
    elsif v_mode <> 'postgres_changes' and v_published then
      execute format('alter publication %I drop table public.rooms', c_pub);
      v_done := array_append(v_done, 'unpublished public.rooms');
    end if;
  end if;

  -- Broadcast: the trigger, the topic policies and the flush job exist exactly in that mode.
  if v_mode = 'broadcast' then
    if not v_has_send then
      raise exception using errcode = '22023',
        message = 'hms_realtime: broadcast needs realtime.send(jsonb, text, text, boolean) (Supabase Realtime)',
        hint = 'use postgres_changes on a database without Supabase Realtime';
    end if;
    if not exists (select 1 from pg_catalog.pg_trigger
        where tgrelid = 'public.rooms'::regclass and tgname = 'hms_rooms_zz_realtime') then
      create trigger hms_rooms_zz_realtime
        before insert or update on public.rooms
        for each row execute function hms_private.rooms_realtime();
      v_done := array_append(v_done, 'created trigger hms_rooms_zz_realtime');
    end if;
    if v_has_messages then
      -- Join-time authorization (Realtime reads realtime.messages as the joining role): a room's
      -- topic for whoever the rooms read policy lets read that room; the all-rooms topic for
      -- whoever may read every room.
      if not exists (select 1 from pg_catalog.pg_policies where schemaname = 'realtime'
          and tablename = 'messages' and policyname = 'hms_room_topic_read') then
        create policy hms_room_topic_read on realtime.messages for select to anon, authenticated
          using (
            realtime.messages.extension = 'broadcast'
            and (select realtime.topic()) like 'hms:room:%'
            and (select public.hms_realtime_may_read_payload())
            and exists (select 1 from public.rooms r
              where 'hms:room:' || r.hms_room_id = (select realtime.topic()))
          );
        v_done := array_append(v_done, 'created policy hms_room_topic_read');
      end if;
      if not exists (select 1 from pg_catalog.pg_policies where schemaname = 'realtime'
          and tablename = 'messages' and policyname = 'hms_rooms_topic_read') then
        create policy hms_rooms_topic_read on realtime.messages for select to anon, authenticated
          using (
            realtime.messages.extension = 'broadcast'
            and (select realtime.topic()) = 'hms:rooms'
            and (select public.hms_realtime_may_read_all_rooms())
          );
        v_done := array_append(v_done, 'created policy hms_rooms_topic_read');
      end if;
    end if;
    if v_has_cron then
      -- Upserts by name. Both jobs or neither. Every second where pg_cron takes '1 seconds'
      -- (1.5+, as on Supabase); an older one refuses it (22023 invalid schedule) and flushes
      -- every minute, its finest schedule.
      begin
        begin
          perform cron.schedule('hms-realtime-flush', '1 seconds', 'select hms_private.realtime_flush()');
        exception when invalid_parameter_value then
          perform cron.schedule('hms-realtime-flush', '* * * * *', 'select hms_private.realtime_flush()');
        end;
        perform cron.schedule('hms-realtime-flush-history', '0 * * * *', c_history);
        v_done := array_append(v_done, 'scheduled hms-realtime-flush and hms-realtime-flush-history');
      exception when others then
        raise warning 'hms_realtime: could not schedule hms-realtime-flush every second (%): call select hms_private.realtime_flush() from a scheduler', sqlerrm;
      end;
    else
      raise notice 'hms_realtime: pg_cron is not installed: the last change of a burst is sent with the room''s next change, or call select hms_private.realtime_flush() every second';
    end if;
  else
    if exists (select 1 from pg_catalog.pg_trigger
        where tgrelid = 'public.rooms'::regclass and tgname = 'hms_rooms_zz_realtime') then
      drop trigger hms_rooms_zz_realtime on public.rooms;
      v_done := array_append(v_done, 'dropped trigger hms_rooms_zz_realtime');
    end if;
    if v_has_messages then
      if exists (select 1 from pg_catalog.pg_policies where schemaname = 'realtime'
          and tablename = 'messages' and policyname = 'hms_room_topic_read') then
        drop policy hms_room_topic_read on realtime.messages;
        v_done := array_append(v_done, 'dropped policy hms_room_topic_read');
      end if;
      if exists (select 1 from pg_catalog.pg_policies where schemaname = 'realtime'
          and tablename = 'messages' and policyname = 'hms_rooms_topic_read') then
        drop policy hms_rooms_topic_read on realtime.messages;
        v_done := array_append(v_done, 'dropped policy hms_rooms_topic_read');
      end if;
    end if;
    -- Nested: cron.job does not exist without pg_cron, and the query is planned when reached.
    if v_has_cron then
      if exists (select 1 from cron.job where jobname = 'hms-realtime-flush') then
        perform cron.unschedule('hms-realtime-flush');
        v_done := array_append(v_done, 'unscheduled hms-realtime-flush');
      end if;
      if exists (select 1 from cron.job where jobname = 'hms-realtime-flush-history') then
        perform cron.unschedule('hms-realtime-flush-history');
        v_done := array_append(v_done, 'unscheduled hms-realtime-flush-history');
      end if;
    end if;
  end if;

  return format('realtime = %s: %s', v_mode,
    coalesce(nullif(array_to_string(v_done, ', '), ''), 'nothing to change'));
end
$$;

-- A changed mode takes effect in the same transaction as the update.
create or replace function hms_private.settings_realtime_changed()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform hms_private.realtime_apply();
  return null;
end
$$;

create or replace trigger hms_settings_realtime
  after update on public.hms_settings
  for each row
  when (old.realtime is distinct from new.realtime)
  execute function hms_private.settings_realtime_changed();

-- Supabase grants new functions in public to the API roles by default: only the policy helpers are
-- for them (Realtime evaluates it as the joining role); the rest is for the service role.
revoke all on function hms_private.rooms_realtime() from public, anon, authenticated;
revoke all on function hms_private.realtime_flush() from public, anon, authenticated;
revoke all on function hms_private.realtime_apply() from public, anon, authenticated;
revoke all on function hms_private.settings_realtime_changed() from public, anon, authenticated;
grant execute on function public.hms_realtime_may_read_payload() to anon, authenticated;
grant execute on function public.hms_realtime_may_read_all_rooms() to anon, authenticated;
grant execute on all functions in schema hms_private to service_role;

select hms_private.realtime_apply();
