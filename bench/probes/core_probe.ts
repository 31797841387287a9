/**
 * Times the core in process for one implementation (`--impl wasm|baseline`): the Wasm module's
 * `WebhookHandler.check_event` or the TypeScript baseline's `checkEvent`, on the same signed
 * body, one event at a time after warm-up. Also times two early refusals of the same body — no
 * credentials (the fixed cost of a call) and a wrong signature (that plus the HMAC) — so the
 * full figure can be split into boundary, HMAC and parse + plan. Prints one JSON line.
 */

import { checkEvent, loadConfig } from "../baseline.ts";
import { flags, need } from "../lib/flags.ts";
import {
  credentialHeaders,
  loadBenchPackage,
  readDecision,
} from "../lib/pkg.ts";
import { rounded, summarize } from "../lib/stats.ts";

const f = flags(Deno.args);
const impl = need(f, "impl");
const body = await Deno.readFile(need(f, "body"));
const nowMs = Number(need(f, "now-ms"));
const iters = Number(f.get("iters") ?? "50000");
const warmup = Number(f.get("warmup") ?? "5000");
const env = {
  HMS_WEBHOOK_SECRET: need(f, "secret"),
  SUPABASE_URL: "http://127.0.0.1:54321",
  SUPABASE_SECRET_KEYS: JSON.stringify({ default: "sb_secret_bench" }),
};
const type = { "content-type": "application/json" };
const VARIANTS = {
  full: { ...type, "x-100ms-signature": need(f, "signature") },
  bad_signature: { ...type, "x-100ms-signature": "0".repeat(64) },
  no_credentials: type,
};
type Variant = keyof typeof VARIANTS;

interface Impl {
  /** What the core decides for a variant, and the RPC body when it plans one. */
  decide(v: Variant): Promise<{ outcome: string; rpcBody: string | null }>;
  /** One decision, for timing (a promise only where the implementation is async). */
  once(v: Variant): unknown;
}

async function wasmImpl(): Promise<Impl> {
  const { glue } = await loadBenchPackage();
  const handler = new glue.WebhookHandler(env);
  const creds = Object.fromEntries(
    Object.entries(VARIANTS).map(([k, h]) => [k, credentialHeaders(h)]),
  ) as Record<Variant, [string | undefined, string | undefined]>;
  return {
    decide(v) {
      const d = readDecision(handler.check_event(...creds[v], body, nowMs));
      return Promise.resolve({
        outcome: d.step === "call" ? "call" : `respond ${d.status}`,
        rpcBody: d.step === "call" ? d.args : null,
      });
    },
    once: (v) => handler.check_event(...creds[v], body, nowMs),
  };
}

async function baselineImpl(): Promise<Impl> {
  const config = await loadConfig(env);
  const headers = Object.fromEntries(
    Object.entries(VARIANTS).map(([k, h]) => [k, new Headers(h)]),
  ) as Record<Variant, Headers>;
  return {
    async decide(v) {
      const d = await checkEvent(config, "POST", headers[v], body, nowMs);
      return {
        outcome: d.kind === "call" ? "call" : `respond ${d.status}`,
        rpcBody: d.kind === "call" ? d.body : null,
      };
    },
    once: (v) => checkEvent(config, "POST", headers[v], body, nowMs),
  };
}

/** One timed decision in microseconds (awaited only where the implementation is async). */
async function timeOnce(core: Impl, v: Variant): Promise<number> {
  const t0 = performance.now();
  const r = core.once(v);
  if (r instanceof Promise) await r;
  return (performance.now() - t0) * 1000;
}

/**
 * Times the three variants in interleaved blocks (full: `n`, each refusal: n/5), so that load
 * drift during the run affects the breakdown's terms alike.
 */
async function timeAll(core: Impl, n: number, w: number) {
  const small = Math.max(1, Math.floor(n / 5));
  for (
    const [v, count] of [["full", w], ["bad_signature", w / 5], [
      "no_credentials",
      w / 5,
    ]] as const
  ) {
    for (let i = 0; i < count; i++) await timeOnce(core, v);
  }
  const samples = {
    full: [] as number[],
    bad_signature: [] as number[],
    no_credentials: [] as number[],
  };
  const BLOCKS = 10;
  for (let b = 0; b < BLOCKS; b++) {
    const share = (total: number) =>
      Math.floor(total / BLOCKS) + (b < total % BLOCKS ? 1 : 0);
    for (let i = share(n); i > 0; i--) {
      samples.full.push(await timeOnce(core, "full"));
    }
    for (let i = share(small); i > 0; i--) {
      samples.bad_signature.push(await timeOnce(core, "bad_signature"));
    }
    for (let i = share(small); i > 0; i--) {
      samples.no_credentials.push(await timeOnce(core, "no_credentials"));
    }
  }
  return {
    full: rounded(summarize(samples.full)),
    bad_signature: rounded(summarize(samples.bad_signature)),
    no_credentials: rounded(summarize(samples.no_credentials)),
  };
}

const core = impl === "wasm"
  ? await wasmImpl()
  : impl === "baseline"
  ? await baselineImpl()
  : (() => {
    throw new Error(`unknown --impl ${impl}`);
  })();
const first = await core.decide("full");
for (const v of ["bad_signature", "no_credentials"] as const) {
  const { outcome } = await core.decide(v);
  if (outcome !== "respond 401") {
    throw new Error(`${v} was answered ${outcome}, not 401`);
  }
}
const timed = await timeAll(core, iters, warmup);
console.log(JSON.stringify({
  impl: impl === "wasm" ? "wasm_deno" : "ts_baseline",
  iters,
  warmup,
  per_event_us: timed.full,
  breakdown_us: {
    no_credentials: timed.no_credentials.median,
    bad_signature: timed.bad_signature.median,
  },
  outcome: first.outcome,
  rpc_body: first.rpcBody,
}));
