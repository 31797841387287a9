-- hms-webhook rules (docs/design.md §7-8) as pure SQL functions of stored facts. Each is one
-- expression the planner inlines where it is used (language sql, no SET, one select without FROM,
-- declared no less volatile than its body: timestamptz arithmetic and extract(epoch) are stable),
-- so the apply pays no call per rule. The writers are in 20261206000300_hms_apply.sql.
-- Idempotent.
--
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

-- live(S). Envelope: not closed. Flat: no close yet, or an open/join later than the latest close.
create or replace function hms_private.session_live(
  p_session_id text, p_closed_at timestamptz, p_last_open_at timestamptz, p_last_join_at timestamptz
) returns boolean
language sql
immutable
as $$
  select case
    when p_session_id <> '' then p_closed_at is null
    else p_closed_at is null or coalesce(greatest(p_last_open_at, p_last_join_at) > p_closed_at, false)
  end
$$;

-- present(P). Envelope: seen, not left (by a leave, or by a snapshot that no longer listed it after
-- it joined), session not closed. Flat: the latest join beats the latest leave and the latest close.
create or replace function hms_private.peer_present(
  p_session_id text, p_closed_at timestamptz,
  p_seen boolean, p_joined_at timestamptz, p_last_join_at timestamptz, p_left_at timestamptz,
  p_absent_at timestamptz
) returns boolean
language sql
immutable
as $$
  select case
    when p_session_id <> '' then
      p_seen and p_left_at is null and not coalesce(p_joined_at < p_absent_at, false)
      and p_closed_at is null
    else
      p_seen and p_last_join_at is not null
      and (p_left_at is null or p_last_join_at > p_left_at)
      and (p_closed_at is null or p_last_join_at > p_closed_at)
  end
$$;

-- last_active_at = max(previous, least(event time, received + 120 s)): no event can pin a room.
create or replace function hms_private.active_at(
  p_previous timestamptz, p_event_at timestamptz, p_received_at timestamptz
) returns timestamptz
language sql
stable
as $$
  select case
    when p_event_at is null then p_previous
    else greatest(p_previous, least(p_event_at, p_received_at + interval '120 seconds'))
  end
$$;

-- ---------------------------------------------------------------------------------------------
-- Trending (design §8; tests/support/trending.rs is the Rust twin). The defaults repeat the
-- hms_settings column defaults; the behaviour tests check that they agree.
-- ---------------------------------------------------------------------------------------------

-- base = listeners × listener_weight + speakers × speaker_weight + (featured ? bonus : 0).
create or replace function hms_private.trending_base(
  p_listeners bigint, p_speakers bigint, p_featured boolean,
  p_listener_weight double precision, p_speaker_weight double precision,
  p_featured_bonus double precision
) returns double precision
language sql
immutable
parallel safe
as $$
  select coalesce(p_listeners, 0)::double precision * p_listener_weight
    + coalesce(p_speakers, 0)::double precision * p_speaker_weight
    + case when coalesce(p_featured, false) then p_featured_bonus else 0 end
$$;

-- Score: base × 0.5^(max(0, hours) / half_life), in float8, then numeric rounded to 2 decimals
-- (half away from zero). An unusable half-life scores 0 (like Rust, no division by zero);
-- negative, unknown or NaN ages count as "just now"; ages past 1000 half-lives and bases below
-- 1e-200 score 0 directly (PostgreSQL would raise "underflow" where Rust returns 0).
create or replace function hms_private.trending_score(
  p_listeners bigint,
  p_speakers bigint,
  p_featured boolean,
  p_hours double precision,
  p_listener_weight double precision default 1,
  p_speaker_weight double precision default 3,
  p_featured_bonus double precision default 5,
  p_half_life_hours double precision default 6
) returns numeric
language sql
immutable
parallel safe
as $$
  select case
    when not (p_half_life_hours > 0 and p_half_life_hours < 'Infinity'::double precision) then 0::numeric
    when not (hms_private.trending_base(p_listeners, p_speakers, p_featured,
                p_listener_weight, p_speaker_weight, p_featured_bonus) > 1e-200)
      or (case when p_hours > 0 and p_hours <> 'NaN'::double precision then p_hours else 0 end)
         / p_half_life_hours > 1000 then 0::numeric
    else round((hms_private.trending_base(p_listeners, p_speakers, p_featured,
                  p_listener_weight, p_speaker_weight, p_featured_bonus)
                * power(0.5::double precision,
                    (case when p_hours > 0 and p_hours <> 'NaN'::double precision then p_hours else 0 end)
                    / p_half_life_hours))::numeric, 2)
  end
$$;

-- Rank key: log2(base) + epoch / (half_life × 3600), null when base is 0 (or the key would not be
-- finite). Ordering by it equals ordering by the decayed score at every instant, and it never
-- changes while the row does not.
create or replace function hms_private.trending_rank(
  p_listeners bigint,
  p_speakers bigint,
  p_featured boolean,
  p_last_active_epoch double precision,
  p_listener_weight double precision default 1,
  p_speaker_weight double precision default 3,
  p_featured_bonus double precision default 5,
  p_half_life_hours double precision default 6
) returns double precision
language sql
immutable
parallel safe
as $$
  select case
    when hms_private.trending_base(p_listeners, p_speakers, p_featured,
           p_listener_weight, p_speaker_weight, p_featured_bonus) > 0
      and hms_private.trending_base(p_listeners, p_speakers, p_featured,
           p_listener_weight, p_speaker_weight, p_featured_bonus) < 'Infinity'::double precision
      and p_half_life_hours > 0
      and abs(p_last_active_epoch / (p_half_life_hours * 3600)) < 'Infinity'::double precision
    then ln(hms_private.trending_base(p_listeners, p_speakers, p_featured,
              p_listener_weight, p_speaker_weight, p_featured_bonus)) / ln(2::double precision)
      + p_last_active_epoch / (p_half_life_hours * 3600)
  end
$$;

-- The stored score of a room as of p_now; a room with no last_active_at scores 0. Clamped to what
-- NUMERIC(10,2) holds so an absurd count can never make a webhook fail.
create or replace function hms_private.room_score(
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
language sql
stable
parallel safe
as $$
  select case
    when p_last_active_at is null then 0::numeric
    else least(hms_private.trending_score(p_listeners, p_speakers, p_featured,
        ((extract(epoch from p_now) - extract(epoch from p_last_active_at)) / 3600)::double precision,
        p_listener_weight, p_speaker_weight, p_featured_bonus, p_half_life_hours),
      99999999.99)
  end
$$;

-- ---------------------------------------------------------------------------------------------
-- Answers (design §4/§6).
-- ---------------------------------------------------------------------------------------------

-- The `room` object of an answer, null for no room.
create or replace function hms_private.room_json(p_room public.rooms)
returns jsonb
language sql
stable
as $$
  select case when p_room.id is null then null else jsonb_build_object(
    'hms_room_id', p_room.hms_room_id,
    'is_live', coalesce(p_room.is_live, false),
    'listener_count', coalesce(p_room.listener_count, 0),
    'speaker_count', coalesce(p_room.speaker_count, 0),
    'trending_score', coalesce(p_room.trending_score, 0),
    'last_active_at',
      to_char(p_room.last_active_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
  ) end
$$;

-- The webhook RPC's answer: status plus the room as the webhook response shows it.
create or replace function hms_private.apply_answer(p_status text, p_room public.rooms)
returns jsonb
language sql
stable
as $$
  select jsonb_build_object('status', p_status, 'reason', null, 'room', hms_private.room_json(p_room))
$$;

-- What a snapshot or the 12-hour rule reports of a room before and after it (design §6.1).
create or replace function hms_private.room_counts(p_room public.rooms)
returns jsonb
language sql
immutable
as $$
  select jsonb_build_object('is_live', coalesce(p_room.is_live, false),
    'listener_count', coalesce(p_room.listener_count, 0), 'speaker_count', coalesce(p_room.speaker_count, 0))
$$;

-- Recap: a peer's time present, from its join to its leave or the session's end (the earlier;
-- both are maxima of what was received, so the result does not depend on delivery order); up to
-- p_now while neither is known. Exact (numeric seconds, µs).
create or replace function hms_private.peer_seconds(
  p_joined_at timestamptz, p_left_at timestamptz, p_closed_at timestamptz, p_now timestamptz
) returns numeric
language sql
stable
as $$
  select greatest(0::numeric, extract(epoch from
    least(p_left_at, p_closed_at, case when p_left_at is null and p_closed_at is null then p_now end)
    - p_joined_at))
$$;

-- hms_private's functions are for the service role (the apply runs as it) and nobody else.
revoke all on all functions in schema hms_private from public, anon, authenticated;
grant execute on all functions in schema hms_private to service_role;
