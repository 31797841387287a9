/**
 * Section 3, end to end: signed webhooks through the local stack's gateway to the function, its
 * RPC through the REST stand-in into PostgreSQL. Latency and throughput at concurrency 1/16/64
 * over many rooms, a hot-room join storm, the function's peak RSS, counts checked exactly; plus
 * the same traffic sent straight to the function (no gateway hop) and to the TS baseline function.
 */

import postgres from "postgres";
import type { BenchContext } from "../lib/context.ts";
import { LEVELS, sizes } from "../lib/context.ts";
import { statusKb } from "../lib/proc.ts";
import type { HostedStack } from "../lib/stack_client.ts";
import { httpSender, type LevelResult, runLevel } from "../lib/traffic.ts";

export interface E2eResult {
  path: string;
  levels: LevelResult[];
  hot_room: LevelResult;
  /** The function process alone (no gateway hop in front of it). */
  direct: LevelResult[];
  function_peak_rss_kb: number | null;
  baseline: { levels: LevelResult[]; function_peak_rss_kb: number | null } | {
    skipped: string;
  };
}

export async function runE2e(
  ctx: BenchContext,
  stack: HostedStack,
): Promise<E2eResult> {
  const size = sizes(ctx.quick);
  const { info } = stack;
  const sql = postgres(info.databaseUrl, { max: 4, onnotice: () => {} });
  const pidsWith = (fn: number | null) => ({
    function: fn,
    gateway_rest: info.pids.host,
    postgres: info.pids.postgres,
    load_generator: Deno.pid,
  });
  const pids = pidsWith(info.pids.function);
  const level: Level = (
    what,
    url,
    concurrency,
    events,
    seed,
    fn = info.pids.function,
  ) =>
    runLevel({
      what,
      sql,
      secret: info.secret,
      rooms: size.rooms,
      events,
      concurrency,
      seed,
      send: httpSender(url),
      pids: pidsWith(fn),
    });
  try {
    ctx.log(`e2e: warm-up (${size.warmupEvents} events)`);
    await level("warm-up", info.functionUrl, 8, size.warmupEvents, 1);
    const levels: LevelResult[] = [];
    for (const c of LEVELS) {
      ctx.log(
        `e2e: concurrency ${c}, ${
          size.perLevel[c]
        } events over ${size.rooms} rooms`,
      );
      levels.push(
        await level(
          `e2e c=${c}`,
          info.functionUrl,
          c,
          size.perLevel[c],
          10 + c,
        ),
      );
    }
    ctx.log(
      `e2e: hot room, ${size.hotRoomJoins} joins at concurrency ${size.hotRoomConcurrency}`,
    );
    const hot = await runLevel({
      what: "e2e hot room",
      sql,
      secret: info.secret,
      rooms: 1,
      events: size.hotRoomJoins,
      concurrency: size.hotRoomConcurrency,
      seed: 99,
      joinsOnly: true,
      send: httpSender(info.functionUrl),
      pids,
    });
    const direct: LevelResult[] = [];
    for (const c of [1, 16]) {
      ctx.log(`e2e: straight to the function process, concurrency ${c}`);
      direct.push(
        await level(
          `direct c=${c}`,
          info.functionDirectUrl,
          c,
          size.compareEvents[c],
          30 + c,
        ),
      );
    }
    const peak = statusKb(info.pids.function, "VmHWM");
    return {
      path:
        "client -> gateway -> function (Wasm) -> gateway /rest/v1 -> PostgreSQL",
      levels,
      hot_room: hot,
      direct,
      function_peak_rss_kb: peak,
      baseline: await runBaseline(ctx, stack, level),
    };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

type Level = (
  what: string,
  url: string,
  concurrency: number,
  events: number,
  seed: number,
  functionPid?: number,
) => Promise<LevelResult>;

async function runBaseline(
  ctx: BenchContext,
  stack: HostedStack,
  level: Level,
): Promise<E2eResult["baseline"]> {
  const pid = stack.info.pids.baseline;
  if (pid === null) return { skipped: "the baseline function did not start" };
  const size = sizes(ctx.quick);
  await stack.target("baseline");
  try {
    const levels: LevelResult[] = [];
    const url = stack.info.functionUrl;
    await level("baseline warm-up", url, 8, size.warmupEvents, 2, pid);
    for (const c of [1, 16]) {
      ctx.log(`e2e: TypeScript baseline function, concurrency ${c}`);
      levels.push(
        await level(
          `baseline c=${c}`,
          url,
          c,
          size.compareEvents[c],
          50 + c,
          pid,
        ),
      );
    }
    return { levels, function_peak_rss_kb: statusKb(pid, "VmHWM") };
  } finally {
    await stack.target("rust");
  }
}
