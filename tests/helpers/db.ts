/**
 * Reads the database as the superuser for assertions: whole-database snapshots (row count and
 * content hash of every table in `public`) and the "nothing was written" guard built on them,
 * one room's row, and test rooms with fresh ids.
 */

import type postgres from "postgres";
import { assert } from "./assert.ts";
import { GO_ZERO_TIME, objectId, parseTime } from "../../scripts/lib/hms.ts";

/** RFC 3339 to microseconds, truncating nanoseconds; absent or Go zero time is null. */
export function micros(text: unknown): bigint | null {
  if (typeof text !== "string" || text === "" || text === GO_ZERO_TIME) {
    return null;
  }
  const ns = parseTime(text);
  return ns >= 0n ? ns / 1000n : -((-ns + 999n) / 1000n);
}

/** Per table: row count and an md5 over its rows' text, in a stable order. */
export type Snapshot = Record<string, { rows: number; hash: string }>;

/** Counts and hashes every table of schemas `public` and `hms_private` in one statement
 * (a table of hms_private is named with its schema). */
export async function snapshot(sql: postgres.Sql): Promise<Snapshot> {
  const tables = await sql<{ name: string }[]>`
    select case when schemaname = 'public' then tablename else schemaname || '.' || tablename end
      as name
    from pg_tables where schemaname in ('public', 'hms_private') order by 1`;
  if (tables.length === 0) throw new Error("no tables in schema public");
  const parts = tables.map(({ name }) => {
    const quoted = name.split(".").map((part) =>
      `"${part.replaceAll('"', '""')}"`
    )
      .join(".");
    return `select '${
      name.replaceAll("'", "''")
    }' as name, count(*)::int as rows, ` +
      `md5(coalesce(string_agg(t::text, '|' order by t::text), '')) as hash ` +
      `from ${name.includes(".") ? "" : "public."}${quoted} t`;
  });
  const result = await sql.unsafe(parts.join(" union all "));
  return Object.fromEntries(
    result.map((r) => [r.name, { rows: r.rows, hash: r.hash }]),
  );
}

/**
 * Runs `action` and asserts it wrote nothing: every table of schemas public and hms_private (rooms,
 * hms_settings, hms_private.presence, hms_private.sessions, hms_private.events, …) keeps its row count and content hash, and each
 * room in `roomIds` keeps its row.
 */
export async function assertNothingWritten<T>(
  sql: postgres.Sql,
  roomIds: readonly string[],
  label: string,
  action: () => Promise<T>,
): Promise<T> {
  const before = await snapshot(sql);
  const rooms = await Promise.all(roomIds.map((id) => roomRow(sql, id)));
  const result = await action();
  const after = await snapshot(sql);
  for (const table of Object.keys(before)) {
    assert.equal(
      after[table]?.rows,
      before[table].rows,
      `${label}: row count of ${table} changed`,
    );
  }
  assert.deepEqual(after, before, `${label}: a table's content changed`);
  assert.deepEqual(
    await Promise.all(roomIds.map((id) => roomRow(sql, id))),
    rooms,
    `${label}: the room row changed`,
  );
  return result;
}

/** A room's row as the tests compare it. `lastActiveUs` is microseconds since the epoch. */
export interface RoomRow {
  hmsRoomId: string;
  isLive: boolean | null;
  listeners: number;
  speakers: number;
  lastActiveUs: bigint;
  trendingScore: number;
  featured: boolean | null;
}

/** One room by its 100ms id, or null. */
export async function roomRow(
  sql: postgres.Sql,
  hmsRoomId: string,
): Promise<RoomRow | null> {
  const rows = await sql`
    select hms_room_id, is_live, listener_count, speaker_count, featured,
           trending_score::float8 as trending_score,
           (extract(epoch from last_active_at) * 1000000)::int8::text as last_active_us
    from public.rooms where hms_room_id = ${hmsRoomId}`;
  if (rows.length === 0) return null;
  const r = rows[0];
  return {
    hmsRoomId: r.hms_room_id,
    isLive: r.is_live,
    listeners: r.listener_count,
    speakers: r.speaker_count,
    lastActiveUs: BigInt(r.last_active_us),
    trendingScore: r.trending_score,
    featured: r.featured,
  };
}

/** Inserts a room with a fresh ObjectId-style 100ms id and returns the id. */
export async function createRoom(
  sql: postgres.Sql,
  hmsRoomId = objectId(),
): Promise<string> {
  await sql`insert into public.rooms (hms_room_id) values (${hmsRoomId})`;
  return hmsRoomId;
}

/** The room's `last_active_at` right after insertion (the column default), in microseconds. */
export async function initialLastActive(
  sql: postgres.Sql,
  hmsRoomId: string,
): Promise<bigint> {
  const row = await roomRow(sql, hmsRoomId);
  if (row === null) throw new Error(`room ${hmsRoomId} does not exist`);
  return row.lastActiveUs;
}
