/**
 * Section 4, the ceiling: the same traffic applied by calling `public.hms_apply_event` directly,
 * one pooled `npm:postgres` connection per worker, no HTTP, same concurrency levels. The RPC
 * arguments are planned beforehand (untimed) by the TypeScript baseline, so only the database
 * work is measured. A second variant at c=16 sends the SQL the REST stand-in sends (transaction,
 * `set_config` role/claims, arguments through `json_to_record`) to split the end-to-end overhead
 * into "the REST call's SQL shape" and "HTTP + JavaScript".
 */

import postgres from "postgres";
import { type ApplyArgs, checkEvent, loadConfig } from "../baseline.ts";
import type { BenchContext } from "../lib/context.ts";
import { LEVELS, sizes } from "../lib/context.ts";
import type { Delivery } from "../lib/events.ts";
import type { HostedStack } from "../lib/stack_client.ts";
import {
  type LevelResult,
  type Path,
  runLevel,
  runStandard,
  type Sender,
} from "../lib/traffic.ts";

export interface CeilingResult {
  path: string;
  levels: LevelResult[];
  hot_room: LevelResult;
  /** c=16 with the REST stand-in's SQL per call (see `restShaped`). */
  rest_shaped: LevelResult;
}

/** The columns `json_to_record` types the arguments with, as the REST stand-in declares them. */
const ARG_TYPES = [
  "p_event_id text",
  "p_event_type text",
  "p_action text",
  "p_room_id text",
  "p_session_id text",
  "p_session_started_at timestamptz",
  "p_peer_id text",
  "p_role text",
  "p_role_class text",
  "p_event_at timestamptz",
  "p_joined_at timestamptz",
  "p_auto_create boolean",
  "p_received_at timestamptz",
];
const REST_CALL = `select to_json(public.hms_apply_event(${
  ARG_TYPES.map((a) => a.split(" ")[0]).map((n) => `${n} := _a.${n}`).join(", ")
}))::text as j from json_to_record($1::text::json) as _a(${
  ARG_TYPES.join(", ")
})`;
// What scripts/stack/rest.ts runs first in every request's transaction.
const REST_SETUP = "select set_config('role', $1, true), " +
  "set_config('request.jwt.claims', $2, true), " +
  "set_config('search_path', 'public, extensions', true), " +
  "set_config('statement_timeout', $3, true)";

function accepted(result: unknown): void {
  const status = (result as { status?: string } | null)?.status;
  if (status !== "applied" && status !== "duplicate") {
    throw new Error(`unexpected result: ${JSON.stringify(result)}`);
  }
}

export async function runCeiling(
  ctx: BenchContext,
  stack: HostedStack,
): Promise<CeilingResult> {
  const size = sizes(ctx.quick);
  const { info } = stack;
  const admin = postgres(info.databaseUrl, { max: 2, onnotice: () => {} });
  const maxWorkers = Math.max(...LEVELS, size.hotRoomConcurrency);
  const conns = Array.from(
    { length: maxWorkers },
    () => postgres(info.databaseUrl, { max: 1, onnotice: () => {} }),
  );
  const planner = await loadConfig({
    HMS_WEBHOOK_SECRET: info.secret,
    SUPABASE_URL: "http://planner.invalid",
    SUPABASE_SERVICE_ROLE_KEY: "unused",
  });
  const planned = new Map<string, ApplyArgs>();
  const prepare = async (
    workload: { opens: Delivery[]; events: Delivery[] },
  ) => {
    planned.clear();
    for (const d of [...workload.opens, ...workload.events]) {
      const decision = await checkEvent(
        planner,
        "POST",
        new Headers(d.headers),
        new TextEncoder().encode(d.body),
        Date.now(),
      );
      if (decision.kind !== "call") {
        throw new Error(
          `planner refused an event: ${JSON.stringify(decision.body)}`,
        );
      }
      planned.set(d.body, decision.args);
    }
  };
  const argsOf = (d: Delivery) => {
    const a = planned.get(d.body);
    if (a === undefined) throw new Error("event was not planned");
    return a;
  };
  // Times go as text and are cast in SQL: bound as timestamptz, npm:postgres would serialise
  // them through a JS Date and drop the microseconds the counting model orders by.
  const direct: Sender = async (d, worker) => {
    const a = argsOf(d);
    const [row] = await conns[worker]`select public.hms_apply_event(
      p_event_id => ${a.p_event_id}, p_event_type => ${a.p_event_type},
      p_action => ${a.p_action}, p_room_id => ${a.p_room_id},
      p_session_id => ${a.p_session_id},
      p_session_started_at => ${a.p_session_started_at}::text::timestamptz,
      p_peer_id => ${a.p_peer_id}::text, p_role => ${a.p_role}::text,
      p_role_class => ${a.p_role_class}::text,
      p_event_at => ${a.p_event_at}::text::timestamptz,
      p_joined_at => ${a.p_joined_at}::text::timestamptz,
      p_auto_create => ${a.p_auto_create}::boolean,
      p_received_at => ${a.p_received_at}::text::timestamptz
    ) as result`;
    accepted(row.result);
  };
  const restShaped: Sender = async (d, worker) => {
    const a = argsOf(d);
    const json: string = await conns[worker].begin(async (tx) => {
      await tx.unsafe(REST_SETUP, [
        "service_role",
        '{"role":"service_role"}',
        "30s",
      ]);
      const [row] = await tx.unsafe(REST_CALL, [JSON.stringify(a)]);
      return row.j as string;
    });
    accepted(JSON.parse(json));
  };
  const path: Path = {
    sql: admin,
    secret: info.secret,
    send: direct,
    prepare,
    pids: { postgres: info.pids.postgres, load_generator: Deno.pid },
  };
  try {
    const { levels, hot_room } = await runStandard(ctx, "ceiling", path, 3);
    ctx.log("ceiling: c=16 with the REST stand-in's SQL per call");
    const rest = await runLevel({
      ...path,
      what: "ceiling REST-shaped",
      rooms: size.rooms,
      events: size.perLevel[16],
      concurrency: 16,
      seed: 26,
      send: restShaped,
    });
    return {
      path:
        "client -> PostgreSQL (select public.hms_apply_event(...), one connection per worker)",
      levels,
      hot_room,
      rest_shaped: rest,
    };
  } finally {
    await Promise.all([admin, ...conns].map((c) => c.end({ timeout: 5 })));
  }
}
