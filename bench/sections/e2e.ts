/**
 * Section 3, end to end: signed webhooks through the local stack's gateway to the function, its
 * RPC through the REST stand-in into PostgreSQL. Latency and throughput at concurrency 1/16/64
 * over many rooms, a hot-room join storm, the function's peak RSS, counts checked exactly; plus
 * the same traffic sent straight to the function (no gateway hop) and to the TS baseline function.
 */

import postgres from "postgres";
import type { BenchContext } from "../lib/context.ts";
import { sizes } from "../lib/context.ts";
import { statusKb } from "../lib/proc.ts";
import type { HostedStack } from "../lib/stack_client.ts";
import {
  httpSender,
  type LevelResult,
  type Path,
  runSeries,
  runStandard,
  warmUp,
} from "../lib/traffic.ts";

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
  const path = (url: string, fn = info.pids.function): Path => ({
    sql,
    secret: info.secret,
    send: httpSender(url),
    pids: {
      function: fn,
      gateway_rest: info.pids.host,
      postgres: info.pids.postgres,
      load_generator: Deno.pid,
    },
  });
  try {
    const { levels, hot_room } = await runStandard(
      ctx,
      "e2e",
      path(info.functionUrl),
      1,
    );
    const direct = await runSeries(ctx, path(info.functionDirectUrl), {
      name: "direct",
      about: "e2e straight to the function process",
      concurrencies: [1, 16],
      events: size.compareEvents,
      seed: 30,
    });
    const peak = statusKb(info.pids.function, "VmHWM");
    return {
      path:
        "client -> gateway -> function (Wasm) -> gateway /rest/v1 -> PostgreSQL",
      levels,
      hot_room,
      direct,
      function_peak_rss_kb: peak,
      baseline: await runBaseline(ctx, stack, path),
    };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function runBaseline(
  ctx: BenchContext,
  stack: HostedStack,
  path: (url: string, functionPid: number) => Path,
): Promise<E2eResult["baseline"]> {
  const pid = stack.info.pids.baseline;
  if (pid === null) return { skipped: "the baseline function did not start" };
  const size = sizes(ctx.quick);
  await stack.target("baseline");
  try {
    const baseline = path(stack.info.functionUrl, pid);
    await warmUp(ctx, "baseline warm-up", baseline, 2);
    const levels = await runSeries(ctx, baseline, {
      name: "baseline",
      about: "e2e TypeScript baseline function",
      concurrencies: [1, 16],
      events: size.compareEvents,
      seed: 50,
    });
    return { levels, function_peak_rss_kb: statusKb(pid, "VmHWM") };
  } finally {
    await stack.target("rust");
  }
}
