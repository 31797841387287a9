/**
 * Section 1, the core per event in process: verify + parse + classify + plan of one signed ~1 KB
 * `peer.join.success`, timed per event after warm-up in (a) Rust native (bench/core.rs),
 * (b) the Wasm module under Deno, (c) the TypeScript baseline. Each runs in its own process, in
 * alternating rounds so load drift on a shared machine hits all three alike, on the same bytes;
 * their RPC bodies must agree (parity), or the race would not be between equivalent programs.
 */

import type { BenchContext } from "../lib/context.ts";
import { sizes } from "../lib/context.ts";
import { coreSample } from "../lib/events.ts";
import { runJson, rustTool } from "../lib/proc.ts";
import type { Summary } from "../lib/stats.ts";
import { functionDenoBinary } from "../../scripts/stack/function.ts";

/** What each implementation's probe prints for one round. */
interface Round {
  impl: string;
  iters: number;
  warmup: number;
  per_event_us: Summary;
  /** Medians of two early 401s of the same body: the fixed cost, and that plus the HMAC. */
  breakdown_us: { no_credentials: number; bad_signature: number };
  /** What the core decided for the sample (must be the RPC call). */
  outcome: string;
  /** The RPC request body it planned, for the parity check. */
  rpc_body: string | null;
  /** Build profile (native only). */
  profile?: string;
}

export interface CoreImpl {
  impl: string;
  rounds: number;
  /** Timed events over all rounds. */
  iters: number;
  /** Each statistic is the median over the rounds of that round's value. */
  per_event_us: Summary;
  /** fixed = no-credentials refusal; hmac = bad-signature refusal minus fixed; rest = the remainder. */
  breakdown_us: { fixed: number; hmac: number; parse_and_plan: number };
  outcome: string;
  rpc_body: string | null;
  profile?: string;
}

export interface CoreResult {
  event_bytes: number;
  native: CoreImpl;
  wasm: CoreImpl;
  baseline: CoreImpl;
  ratios: { wasm_over_native: number; wasm_over_baseline: number };
  parity: { identical: boolean; differences: string[] };
}

/** The secret the core sample is signed with (any value works; it is fixed for reproducibility). */
export const CORE_SECRET = "bench-core-secret-5f1c2a9e";

const r3 = (x: number) => Math.round(x * 1000) / 1000;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1
    ? s[(s.length - 1) / 2]
    : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function combine(rounds: Round[]): CoreImpl {
  const stat = (k: keyof Summary) =>
    r3(median(rounds.map((r) => r.per_event_us[k])));
  // Each term from within one round (one process), then the median over the rounds.
  const fixed = median(rounds.map((r) => r.breakdown_us.no_credentials));
  const hmac = median(
    rounds.map((r) =>
      r.breakdown_us.bad_signature - r.breakdown_us.no_credentials
    ),
  );
  const rest = median(
    rounds.map((r) => r.per_event_us.median - r.breakdown_us.bad_signature),
  );
  const full = stat("median");
  const outcomes = new Set(rounds.map((r) => r.outcome));
  return {
    impl: rounds[0].impl,
    rounds: rounds.length,
    iters: rounds.reduce((n, r) => n + r.iters, 0),
    per_event_us: {
      n: rounds.reduce((n, r) => n + r.per_event_us.n, 0),
      median: full,
      p99: stat("p99"),
      mean: stat("mean"),
      min: stat("min"),
      max: stat("max"),
    },
    breakdown_us: {
      fixed: r3(fixed),
      hmac: r3(hmac),
      parse_and_plan: r3(rest),
    },
    outcome: outcomes.size === 1
      ? rounds[0].outcome
      : [...outcomes].join(" / "),
    rpc_body: rounds[0].rpc_body,
    profile: rounds[0].profile,
  };
}

function diff(a: string | null, b: string | null, label: string): string[] {
  if (a === null || b === null) return [`${label}: no RPC body`];
  const x = JSON.parse(a) as Record<string, unknown>;
  const y = JSON.parse(b) as Record<string, unknown>;
  const keys = new Set([...Object.keys(x), ...Object.keys(y)]);
  return [...keys].filter((k) => JSON.stringify(x[k]) !== JSON.stringify(y[k]))
    .map((k) =>
      `${label}: ${k} ${JSON.stringify(x[k])} vs ${JSON.stringify(y[k])}`
    );
}

export async function runCore(ctx: BenchContext): Promise<CoreResult> {
  const size = sizes(ctx.quick);
  const sample = await coreSample(CORE_SECRET);
  const bodyFile = `${ctx.tmp}/core-event.json`;
  await Deno.writeTextFile(bodyFile, sample.body);
  const common = [
    "--body",
    bodyFile,
    "--signature",
    sample.signature,
    "--secret",
    CORE_SECRET,
    "--now-ms",
    String(sample.nowMs),
    "--iters",
    String(Math.ceil(size.coreIters / size.coreRounds)),
    "--warmup",
    String(size.coreWarmup),
  ];
  // --quick uses the dev profile: `cargo test` has already built it, and the smoke test only
  // checks shape; real numbers come from the size-optimised release profile Cargo.toml sets.
  const cargoArgs = ["run", "--quiet", ...(ctx.quick ? [] : ["--release"])];
  const runners: Record<string, () => Promise<Round>> = {
    native: () =>
      runJson<Round>(rustTool("cargo"), {
        args: [...cargoArgs, "--example", "bench_core", "--", ...common],
        cwd: ctx.root,
        timeoutMs: 900_000,
      }, "cargo run --example bench_core"),
    wasm: () => probe(ctx, "wasm", common),
    baseline: () => probe(ctx, "baseline", common),
  };
  const rounds: Record<string, Round[]> = {
    native: [],
    wasm: [],
    baseline: [],
  };
  const order = Object.keys(runners);
  for (let round = 0; round < size.coreRounds; round++) {
    // Rotate the order so no implementation always runs first (or last) in a round.
    const names = [...order.slice(round % 3), ...order.slice(0, round % 3)];
    ctx.log(
      `core: round ${round + 1}/${size.coreRounds} (${names.join(", ")})`,
    );
    for (const name of names) rounds[name].push(await runners[name]());
  }
  const [native, wasm, baseline] = order.map((name) => combine(rounds[name]));
  for (const r of [native, wasm, baseline]) {
    if (r.outcome !== "call") {
      throw new Error(
        `${r.impl} did not plan the RPC call for the sample (outcome ${r.outcome})`,
      );
    }
  }
  const differences = [
    ...diff(native.rpc_body, wasm.rpc_body, "native vs wasm"),
    ...diff(wasm.rpc_body, baseline.rpc_body, "wasm vs baseline"),
  ];
  return {
    event_bytes: new TextEncoder().encode(sample.body).length,
    native,
    wasm,
    baseline,
    ratios: {
      wasm_over_native: r3(
        wasm.per_event_us.median / native.per_event_us.median,
      ),
      wasm_over_baseline: r3(
        wasm.per_event_us.median / baseline.per_event_us.median,
      ),
    },
    parity: { identical: differences.length === 0, differences },
  };
}

function probe(
  ctx: BenchContext,
  impl: string,
  common: string[],
): Promise<Round> {
  return runJson<Round>(functionDenoBinary(ctx.root), {
    args: [
      "run",
      "-A",
      "bench/probes/core_probe.ts",
      "--impl",
      impl,
      ...common,
    ],
    cwd: ctx.root,
    timeoutMs: 300_000,
  }, `core probe (${impl})`);
}
