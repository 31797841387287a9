/**
 * Runs one measured traffic level against the stack: create the rooms, open their sessions
 * (untimed), send the shuffled events with C workers, then check every room's counts exactly
 * against what was sent — a mismatch fails the bench, because fast and wrong is worthless.
 */

import type postgres from "postgres";
import {
  type Delivery,
  roomIds,
  roomTraffic,
  type Workload,
} from "./events.ts";
import { type BenchContext, LEVELS, sizes } from "./context.ts";
import { type LoadResult, runLoad } from "./load.ts";
import { cpuPerEvent, cpuSnapshot } from "./proc.ts";
import { rounded, summarize, type Summary } from "./stats.ts";

export interface LevelResult {
  concurrency: number;
  rooms: number;
  events: number;
  wall_ms: number;
  throughput_eps: number;
  latency_ms: Summary;
  /** CPU ms per event of each process while the level ran (where the time goes). */
  cpu_ms_per_event: Record<string, number>;
  counts_exact: boolean;
}

export type Sender = (delivery: Delivery, worker: number) => Promise<void>;

/** A sender that POSTs to a function URL and accepts only 200 applied/duplicate. */
export function httpSender(url: string): Sender {
  return async (d) => {
    const res = await fetch(url, {
      method: "POST",
      headers: d.headers,
      body: d.body,
    });
    const text = await res.text();
    if (res.status !== 200) {
      throw new Error(`HTTP ${res.status}: ${text.slice(0, 300)}`);
    }
    const status = JSON.parse(text).status;
    if (status !== "applied" && status !== "duplicate") {
      throw new Error(`unexpected answer: ${text.slice(0, 300)}`);
    }
  };
}

export async function createRooms(
  sql: postgres.Sql,
  rooms: string[],
): Promise<void> {
  await sql`insert into public.rooms (hms_room_id) select unnest(${rooms}::text[])
            on conflict (hms_room_id) do nothing`;
}

/** Compares every room row with the expectation; throws listing the mismatches. */
export async function checkCounts(
  sql: postgres.Sql,
  workload: Workload,
): Promise<void> {
  const rooms = [...workload.expected.keys()];
  const rows = await sql<
    {
      hms_room_id: string;
      listener_count: number;
      speaker_count: number;
      is_live: boolean;
    }[]
  >`select hms_room_id, listener_count, speaker_count, is_live from public.rooms
    where hms_room_id = any(${rooms}::text[])`;
  const byId = new Map(rows.map((r) => [r.hms_room_id, r]));
  const bad: string[] = [];
  for (const [room, want] of workload.expected) {
    const got = byId.get(room);
    if (
      got === undefined || got.listener_count !== want.listeners ||
      got.speaker_count !== want.speakers || got.is_live !== true
    ) {
      bad.push(
        `${room}: want ${want.listeners}L/${want.speakers}S live, got ${
          got === undefined
            ? "no row"
            : `${got.listener_count}L/${got.speaker_count}S ${
              got.is_live ? "live" : "not live"
            }`
        }`,
      );
    }
  }
  if (bad.length > 0) {
    throw new Error(
      `COUNTS NOT EXACT in ${bad.length} of ${rooms.length} rooms:\n  ${
        bad.slice(0, 20).join("\n  ")
      }`,
    );
  }
}

function failOnErrors(what: string, load: LoadResult): void {
  if (load.errors.length === 0) return;
  const sample = [...new Set(load.errors)].slice(0, 5).join("\n  ");
  throw new Error(
    `${what}: ${load.errors.length} requests failed, e.g.\n  ${sample}`,
  );
}

/** One level: what it is called, its size, and where its traffic goes. */
export interface LevelOptions {
  what: string;
  sql: postgres.Sql;
  secret: string;
  rooms: number;
  events: number;
  concurrency: number;
  seed: number;
  joinsOnly?: boolean;
  send: Sender;
  /** Runs once the traffic exists, before anything is sent (e.g. to precompute RPC args). */
  prepare?: (workload: Workload) => Promise<void>;
  pids: Record<string, number | null>;
}

/** What stays the same over a section's levels: the database, the secret, the path, the pids. */
export type Path = Pick<
  LevelOptions,
  "sql" | "secret" | "send" | "prepare" | "pids"
>;

/** Builds fresh rooms + traffic, runs it at `concurrency` and verifies the counts. */
export async function runLevel(opts: LevelOptions): Promise<LevelResult> {
  const rooms = roomIds(opts.rooms);
  await createRooms(opts.sql, rooms);
  const workload = await roomTraffic({
    rooms,
    total: opts.events,
    secret: opts.secret,
    seed: opts.seed,
    joinsOnly: opts.joinsOnly,
  });
  await opts.prepare?.(workload);
  failOnErrors(
    `${opts.what} (session opens)`,
    await runLoad(workload.opens, 4, opts.send),
  );
  const before = cpuSnapshot(opts.pids);
  const load = await runLoad(workload.events, opts.concurrency, opts.send);
  const after = cpuSnapshot(opts.pids);
  failOnErrors(opts.what, load);
  await checkCounts(opts.sql, workload);
  return {
    concurrency: opts.concurrency,
    rooms: opts.rooms,
    events: workload.events.length,
    wall_ms: Math.round(load.wallMs),
    throughput_eps: Math.round(load.throughput),
    latency_ms: rounded(summarize(load.latencies)),
    cpu_ms_per_event: cpuPerEvent(before, after, workload.events.length),
    counts_exact: true,
  };
}

/** The untimed warm-up before a path's levels: a few events at concurrency 8. */
export async function warmUp(
  ctx: BenchContext,
  what: string,
  path: Path,
  seed: number,
): Promise<void> {
  const size = sizes(ctx.quick);
  ctx.log(`${what} (${size.warmupEvents} events)`);
  await runLevel({
    ...path,
    what,
    rooms: size.rooms,
    events: size.warmupEvents,
    concurrency: 8,
    seed,
  });
}

/**
 * One level per concurrency `c`, `events[c]` events over the run's rooms, seeded `seed + c`;
 * `name` prefixes each level's `what` and `about` each log line.
 */
export async function runSeries(
  ctx: BenchContext,
  path: Path,
  series: {
    name: string;
    about: string;
    concurrencies: readonly number[];
    events: Record<number, number>;
    seed: number;
  },
): Promise<LevelResult[]> {
  const size = sizes(ctx.quick);
  const levels: LevelResult[] = [];
  for (const c of series.concurrencies) {
    const events = series.events[c];
    ctx.log(
      `${series.about} at concurrency ${c}, ${events} events over ${size.rooms} rooms`,
    );
    levels.push(
      await runLevel({
        ...path,
        what: `${series.name} c=${c}`,
        rooms: size.rooms,
        events,
        concurrency: c,
        seed: series.seed + c,
      }),
    );
  }
  return levels;
}

/**
 * What the end-to-end path and the direct-SQL ceiling both run, so they compare like for like:
 * a warm-up, every concurrency level over many rooms, then a join storm on one hot room.
 */
export async function runStandard(
  ctx: BenchContext,
  name: string,
  path: Path,
  warmupSeed: number,
): Promise<{ levels: LevelResult[]; hot_room: LevelResult }> {
  const size = sizes(ctx.quick);
  await warmUp(ctx, `${name} warm-up`, path, warmupSeed);
  const levels = await runSeries(ctx, path, {
    name,
    about: name,
    concurrencies: LEVELS,
    events: size.perLevel,
    seed: 10,
  });
  ctx.log(
    `${name}: hot room, ${size.hotRoomJoins} joins at concurrency ${size.hotRoomConcurrency}`,
  );
  const hot_room = await runLevel({
    ...path,
    what: `${name} hot room`,
    rooms: 1,
    events: size.hotRoomJoins,
    concurrency: size.hotRoomConcurrency,
    seed: 99,
    joinsOnly: true,
  });
  return { levels, hot_room };
}
