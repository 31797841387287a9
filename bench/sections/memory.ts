/**
 * Section 5, memory stability: 100,000 requests through one WebhookHandler in one Deno isolate
 * (bench/probes/memory_probe.ts, REST fetch stubbed in process); Wasm linear memory, RSS and JS
 * heap before/after. Wrong answers or a missing log line fail the section.
 */

import type { BenchContext } from "../lib/context.ts";
import { sizes } from "../lib/context.ts";
import { runJson } from "../lib/proc.ts";
import { functionDenoBinary } from "../../scripts/stack/function.ts";

export interface MemoryResult {
  mode: string;
  events: number;
  warmup: number;
  wasm_memory_before_bytes: number;
  wasm_memory_after_bytes: number;
  wasm_memory_max_bytes: number;
  wasm_memory_growth_bytes: number;
  rss_before_kb: number;
  rss_after_kb: number;
  heap_used_before: number;
  heap_used_after: number;
  /** Snapshot after waiting out the RPC timeout timers (see the probe). */
  settle_ms: number;
  wasm_memory_settled_bytes: number;
  rss_settled_kb: number;
  heap_used_settled: number;
  statuses: Record<string, number>;
  rpc_calls: number;
  /** Accepted handled events sent: each must have made exactly one RPC call. */
  rpc_calls_expected: number;
  log_lines: number;
  requests_per_second_incl_generation: number;
}

interface ProbeOutput
  extends Omit<MemoryResult, "mode" | "wasm_memory_growth_bytes"> {
  mismatches: number;
  mismatch_samples: string[];
  requests: number;
}

export async function runMemory(ctx: BenchContext): Promise<MemoryResult> {
  const events = sizes(ctx.quick).memoryEvents;
  ctx.log(`memory: ${events} requests through one isolate`);
  const out = await runJson<ProbeOutput>(functionDenoBinary(ctx.root), {
    args: [
      "run",
      "--allow-env",
      "--allow-read",
      "--v8-flags=--expose-gc",
      "bench/probes/memory_probe.ts",
      "--events",
      String(events),
    ],
    cwd: ctx.root,
    timeoutMs: 600_000,
  }, "memory probe");
  if (out.mismatches > 0) {
    throw new Error(
      `${out.mismatches} wrong answers, e.g.\n  ${
        out.mismatch_samples.join("\n  ")
      }`,
    );
  }
  if (out.rpc_calls !== out.rpc_calls_expected) {
    throw new Error(
      `${out.rpc_calls} RPC calls for ${out.rpc_calls_expected} accepted events (want one each)`,
    );
  }
  if (out.log_lines !== out.requests) {
    throw new Error(
      `${out.requests} requests but ${out.log_lines} log lines (want exactly one each)`,
    );
  }
  const { mismatches: _m, mismatch_samples: _s, requests: _r, ...rest } = out;
  return {
    mode: "WebhookHandler.handle in one Deno process, REST fetch stubbed",
    ...rest,
    wasm_memory_growth_bytes: out.wasm_memory_after_bytes -
      out.wasm_memory_before_bytes,
  };
}
