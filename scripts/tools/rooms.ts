/**
 * `npm run rooms`: prints the trending feed (`trending_rooms`) as an aligned terminal table:
 * rank, room, live, listeners, speakers, featured, score now, last active, and who is on stage
 * (the speakers' names from `room_participants`) in each live room, one row per room. Reads
 * through the REST API with supabase-js (default: the local stack) or straight from Postgres
 * with `--url`. A key or database role that may not read `room_participants` (`anon`, by
 * default) still gets the feed, without the stage column, and is told why on stderr.
 */

import { createClient } from "@supabase/supabase-js";
import postgres from "postgres";
import { UsageError } from "./send.ts";
import { requireStack } from "./stack_info.ts";
import { runTool } from "./cli.ts";

/** One row of the feed, normalised (Postgres numerics arrive as strings through postgres.js). */
export interface FeedRow {
  hms_room_id: string;
  is_live: boolean;
  listener_count: number;
  speaker_count: number;
  featured: boolean;
  last_active_at: string | null;
  /** The decayed score at read time, as the feed computes it. */
  score_now: number;
}

/** Where the feed is read from. */
export type FeedSource =
  | { kind: "postgres"; url: string }
  | { kind: "rest"; url: string; key: string };

/** Feed query options (the arguments of `trending_rooms`). */
export interface FeedQuery {
  limit: number;
  offset?: number;
  liveOnly: boolean;
}

function toNumber(value: unknown, field: string): number {
  const n = typeof value === "number" ? value : Number(value);
  if (value === null || value === undefined || Number.isNaN(n)) {
    throw new Error(`trending_rooms returned a row without a numeric ${field}`);
  }
  return n;
}

/** Checks and normalises one raw feed row; throws naming the field that is off. */
export function toFeedRow(raw: Record<string, unknown>): FeedRow {
  if (typeof raw.hms_room_id !== "string") {
    throw new Error("trending_rooms returned a row without hms_room_id");
  }
  const last = raw.last_active_at;
  return {
    hms_room_id: raw.hms_room_id,
    is_live: raw.is_live === true,
    listener_count: toNumber(raw.listener_count, "listener_count"),
    speaker_count: toNumber(raw.speaker_count, "speaker_count"),
    featured: raw.featured === true,
    last_active_at: last === null || last === undefined
      ? null
      : last instanceof Date
      ? last.toISOString()
      : String(last),
    score_now: toNumber(raw.score_now, "score_now"),
  };
}

/** One connection for reading the database directly. */
function connect(url: string): postgres.Sql {
  return postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
}

/** A REST client for reads with an API key (no session to keep). */
function restClient(source: { url: string; key: string }) {
  return createClient(source.url, source.key, {
    auth: { persistSession: false, autoRefreshToken: false },
  });
}

/** Reads the feed, in the feed's own order. */
export async function fetchFeed(
  source: FeedSource,
  query: FeedQuery,
): Promise<FeedRow[]> {
  const offset = query.offset ?? 0;
  if (source.kind === "postgres") {
    const sql = connect(source.url);
    try {
      const rows = await sql`
        select * from public.trending_rooms(${query.limit}::int, ${offset}::int, ${query.liveOnly}::boolean)`;
      return rows.map((r) => toFeedRow(r as Record<string, unknown>));
    } finally {
      await sql.end({ timeout: 5 });
    }
  }
  const { data, error } = await restClient(source).rpc("trending_rooms", {
    p_limit: query.limit,
    p_offset: offset,
    p_live_only: query.liveOnly,
  });
  if (error) {
    throw new Error(`trending_rooms via ${source.url}: ${error.message}`);
  }
  if (!Array.isArray(data)) {
    throw new Error("trending_rooms did not return a list");
  }
  return data.map((r) => toFeedRow(r as Record<string, unknown>));
}

/** One speaker of a room's stage, as `room_participants` shows it. */
export interface StageRow {
  hms_room_id: string;
  user_name: string | null;
  peer_id: string;
  role: string | null;
}

/** Rooms asked for in one stage read: keeps a REST URL's `in.(…)` list short. */
const STAGE_BATCH = 100;

/** PostgreSQL's insufficient_privilege, which PostgREST passes on as the error's code. */
const PERMISSION_DENIED = "42501";

/**
 * The speakers of `rooms`, by room, in join order; `null` when the source may not read
 * `room_participants` (a key or role the app has not granted it to).
 */
export async function fetchStage(
  source: FeedSource,
  rooms: string[],
): Promise<Map<string, StageRow[]> | null> {
  const reader = stageReader(source);
  try {
    const stage = new Map<string, StageRow[]>();
    for (let i = 0; i < rooms.length; i += STAGE_BATCH) {
      const rows = await reader.rows(rooms.slice(i, i + STAGE_BATCH));
      if (rows === null) return null;
      for (const r of rows) {
        const list = stage.get(r.hms_room_id) ?? [];
        list.push(r);
        stage.set(r.hms_room_id, list);
      }
    }
    return stage;
  } finally {
    await reader.end();
  }
}

/** Reads batches of a stage over one connection (or one REST client); `null`: not permitted. */
function stageReader(source: FeedSource): {
  rows(rooms: string[]): Promise<StageRow[] | null>;
  end(): Promise<void>;
} {
  if (source.kind === "postgres") {
    const sql = connect(source.url);
    return {
      async rows(rooms) {
        try {
          return await sql<StageRow[]>`
            select hms_room_id, user_name, peer_id, role from public.room_participants
            where role_class = 'speaker' and hms_room_id = any(${rooms}::text[])
            order by joined_at, peer_id`;
        } catch (e) {
          if ((e as { code?: string }).code === PERMISSION_DENIED) return null;
          throw e;
        }
      },
      end: () => sql.end({ timeout: 5 }),
    };
  }
  const client = restClient(source);
  return {
    async rows(rooms) {
      const { data, error } = await client.from("room_participants")
        .select("hms_room_id,user_name,peer_id,role")
        .eq("role_class", "speaker")
        .in("hms_room_id", rooms)
        .order("joined_at")
        .order("peer_id");
      if (error?.code === PERMISSION_DENIED) return null;
      if (error) {
        throw new Error(
          `room_participants via ${source.url}: ${error.message}`,
        );
      }
      return (data ?? []) as StageRow[];
    },
    end: async () => {},
  };
}

/** Names shown per room before the rest are counted (`+N`), so a big stage keeps one line. */
export const STAGE_NAMES = 4;

/** A live room's stage cell: its speakers' names (the peer id where 100ms sent none). */
export function stageCell(speakers: StageRow[] = []): string {
  const names = speakers.map((s) => s.user_name || s.peer_id);
  const shown = names.slice(0, STAGE_NAMES).join(", ");
  return names.length > STAGE_NAMES
    ? `${shown} +${names.length - STAGE_NAMES}`
    : shown;
}

/** "just now", "42s ago", "3m ago", "2h ago", "5d ago" (or "in 3s" for a clock ahead of ours). */
export function relativeTime(
  iso: string | null,
  now: number = Date.now(),
): string {
  if (iso === null) return "never";
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return iso;
  const seconds = Math.round((now - then) / 1000);
  const abs = Math.abs(seconds);
  const text = abs < 60
    ? `${abs}s`
    : abs < 3600
    ? `${Math.floor(abs / 60)}m`
    : abs < 86400
    ? `${Math.floor(abs / 3600)}h`
    : `${Math.floor(abs / 86400)}d`;
  if (abs < 2) return "just now";
  return seconds < 0 ? `in ${text}` : `${text} ago`;
}

/** Renders rows as an aligned table (numbers right-aligned). */
export function renderTable(
  header: string[],
  rows: string[][],
  rightAligned: ReadonlySet<number> = new Set(),
): string {
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => r[i].length))
  );
  const line = (cells: string[]) =>
    cells.map((c, i) =>
      rightAligned.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])
    )
      .join("  ").trimEnd();
  return [
    line(header),
    line(widths.map((w) => "-".repeat(w))),
    ...rows.map(line),
  ].join("\n");
}

/** The columns every rooms table shows after the room (state, a score, last activity). */
export function roomColumns(score: string): string[] {
  return ["live", "listeners", "speakers", "featured", score, "last active"];
}

/** A room's cells for {@link roomColumns}. */
export function roomCells(
  r: Omit<FeedRow, "hms_room_id" | "score_now">,
  score: number,
  now: number,
): string[] {
  return [
    r.is_live ? "yes" : "no",
    String(r.listener_count),
    String(r.speaker_count),
    r.featured ? "yes" : "no",
    score.toFixed(2),
    relativeTime(r.last_active_at, now),
  ];
}

/**
 * The feed as the `npm run rooms` table; `rankFrom` is the rank of the first row. With
 * `stage`, a last column lists each live room's speakers (blank for a room not live).
 */
export function renderFeed(
  rows: FeedRow[],
  now: number = Date.now(),
  rankFrom = 1,
  stage: Map<string, StageRow[]> | null = null,
): string {
  if (rows.length === 0) return "(no rooms)";
  return renderTable(
    [
      "rank",
      "room",
      ...roomColumns("score now"),
      ...(stage === null ? [] : ["on stage"]),
    ],
    rows.map((r, i) => [
      String(rankFrom + i),
      r.hms_room_id,
      ...roomCells(r, r.score_now, now),
      ...(stage === null
        ? []
        : [r.is_live ? stageCell(stage.get(r.hms_room_id)) : ""]),
    ]),
    new Set([0, 3, 4, 6]),
  );
}

export const USAGE = `Usage: npm run rooms [-- options]

Prints the rooms ordered by trending (the trending_rooms feed): rank, room id, live,
listeners, speakers, featured, the decayed score now, the last activity, and who is on stage
(the speakers' names, from room_participants) in each live room. A key that may not read
room_participants (anon, unless the app grants it) gets the table without that column.

Options:
  --url URL       read directly from Postgres (postgresql://…)
  --rest URL      read through the REST API at this SUPABASE_URL (needs --key)
  --key K         API key for --rest (anon or service role)
  --live          only live rooms
  --limit N       at most N rooms (1-1000)                  [20]
  --json          print the rows as JSON instead of a table
  -h, --help      this text

Default: the local stack from \`npm start\` (.stack/stack.json), through its REST API.

Examples:
  npm run rooms
  npm run rooms -- --live --limit 5
  npm run rooms -- --url postgresql://postgres@127.0.0.1:54322/postgres
  npm run rooms -- --rest https://<ref>.supabase.co --key "$SUPABASE_ANON_KEY"
`;

const ROOMS_FLAGS = {
  url: "string",
  rest: "string",
  key: "string",
  live: "boolean",
  limit: "string",
  json: "boolean",
  help: "boolean",
} as const;

/** Runs the command; returns the exit code (0 ok, 1 could not read, 2 usage). */
export function main(argv: string[]): Promise<number> {
  return runTool({
    name: "rooms",
    usage: USAGE,
    flags: ROOMS_FLAGS,
    hint: "Run `npm run rooms -- --help` for the options.",
    failure: "could not read the feed",
    parse: ({ strings, booleans }) => {
      const limit = Number(strings.limit ?? "20");
      if (!/^\d+$/.test(strings.limit ?? "20") || limit < 1 || limit > 1000) {
        throw new UsageError("--limit must be a whole number from 1 to 1000");
      }
      const query: FeedQuery = { limit, liveOnly: booleans.has("live") };
      const json = booleans.has("json");
      if (strings.url !== undefined && strings.rest !== undefined) {
        throw new UsageError(
          "give --url (Postgres) or --rest (REST API), not both",
        );
      }
      let source: FeedSource | undefined;
      if (strings.url !== undefined) {
        if (!/^postgres(ql)?:\/\//.test(strings.url)) {
          throw new UsageError(
            "--url must be a postgres:// or postgresql:// URL",
          );
        }
        source = { kind: "postgres", url: strings.url };
      } else if (strings.rest !== undefined) {
        if (strings.key === undefined) {
          throw new UsageError("--rest needs --key");
        }
        source = {
          kind: "rest",
          url: strings.rest.replace(/\/$/, ""),
          key: strings.key,
        };
      } else if (strings.key !== undefined) {
        throw new UsageError("--key goes with --rest");
      }
      return { source, query, json };
    },
    run: async ({ source, query, json }) => {
      if (source === undefined) {
        const stack = await requireStack();
        source = {
          kind: "rest",
          url: stack.supabaseUrl,
          key: stack.serviceRoleKey,
        };
      }
      const rows = await fetchFeed(source, query);
      if (json) {
        console.log(JSON.stringify(rows));
        return 0;
      }
      const live = rows.filter((r) => r.is_live).map((r) => r.hms_room_id);
      const stage = await fetchStage(source, live);
      if (stage === null) {
        console.error(
          "rooms: this key may not read room_participants: no stage column",
        );
      }
      console.log(renderFeed(rows, Date.now(), 1, stage));
      return 0;
    },
  }, argv);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
