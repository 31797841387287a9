/**
 * Memory stability: `--events N` requests through one WebhookHandler in one isolate, with the
 * REST API's fetch stubbed in process. A realistic mix — valid events of every handled type,
 * forged signatures, malformed and stale bodies, ignored types, oversized bodies — each answer
 * checked. Reports Wasm linear memory, RSS and JS heap before and after (after GC). Prints JSON.
 * Needs --v8-flags=--expose-gc.
 */

import { buildEvent, headersFor } from "../../scripts/lib/hms.ts";
import { flags } from "../lib/flags.ts";
import { loadPackage } from "../lib/pkg.ts";
import { STUB_RESULT } from "../lib/rpc_stub.ts";

const f = flags(Deno.args);
const events = Number(f.get("events") ?? "100000");
const warmup = Math.min(1_000, events);
const secret = "bench-memory-secret-93be";
const SETTLE_MS = 11_000;
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --v8-flags=--expose-gc");

let rpcCalls = 0;
const stubBody = JSON.stringify(STUB_RESULT);
globalThis.fetch = (() => {
  rpcCalls++;
  return Promise.resolve(
    new Response(stubBody, { headers: { "content-type": "application/json" } }),
  );
}) as typeof fetch;
let logLines = 0;
console.log = () => {
  logLines++;
};
const print = (line: string) =>
  Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));

const { glue, exports } = await loadPackage();
const handler = new glue.WebhookHandler({
  HMS_WEBHOOK_SECRET: secret,
  SUPABASE_URL: "http://rest.stub.invalid",
  SUPABASE_SECRET_KEYS: JSON.stringify({ default: "sb_secret_bench" }),
});

const TYPES = [
  "peer.join.success",
  "peer.join.success",
  "peer.join.success",
  "peer.leave.success",
  "role.change.success",
  "session.open.success",
  "session.close.success",
  "track.update.success",
  "peer.joined",
  "room.end.success",
];
const BIG = "x".repeat(70_000);

/** Request i of the mix and the status it must get. */
async function request(i: number): Promise<[Request, number]> {
  const kind = i % 20;
  const at = kind === 16 ? new Date(Date.now() - 3_600_000) : new Date();
  const type = kind === 17 ? "recording.success" : TYPES[i % TYPES.length];
  const event = buildEvent(type, {
    at,
    roomId: `memroom${i % 97}`,
    format: i % 11 === 0 ? "flat" : "100ms",
  });
  let body = kind === 15 ? event.body.slice(0, -7) : event.body;
  if (kind === 19) body = body.slice(0, -1) + `,"pad":"${BIG}"}`;
  const headers = await headersFor(body, {
    secret: kind === 14 ? "not-the-secret" : secret,
    auth: kind === 18 ? "header" : "signature",
  });
  const expected = kind === 14 || kind === 16
    ? 401
    : kind === 15
    ? 400
    : kind === 19
    ? 413
    : 200;
  return [
    new Request("http://localhost/", { method: "POST", headers, body }),
    expected,
  ];
}

const statuses: Record<string, number> = {};
// Every accepted, handled event must cost exactly one RPC; refusals and ignored types none.
let rpcExpected = 0;
let mismatches = 0;
const mismatchSamples: string[] = [];
async function drive(from: number, to: number, sample?: (i: number) => void) {
  for (let i = from; i < to; i++) {
    // A server returns to the event loop between requests; without that, timers and
    // finalizers never run and everything they hold looks like a leak.
    if (i % 100 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
    const [req, expected] = await request(i);
    if (expected === 200 && i % 20 !== 17) rpcExpected++;
    const res = await handler.handle(req);
    const text = await res.text();
    statuses[res.status] = (statuses[res.status] ?? 0) + 1;
    if (res.status !== expected) {
      mismatches++;
      if (mismatchSamples.length < 5) {
        mismatchSamples.push(
          `#${i} want ${expected} got ${res.status}: ${text.slice(0, 200)}`,
        );
      }
    }
    sample?.(i);
  }
}

/**
 * Memory after collection. Several GCs, each in its own macrotask: objects reachable only
 * through WeakRefs (Deno's AbortSignal bookkeeping uses them) need the job that made them to
 * end and then more than one pass (chains of weak structures) before they are freed.
 */
const snapshot = async () => {
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setTimeout(resolve, 0));
    gc();
  }
  const mem = Deno.memoryUsage();
  return {
    wasm: exports.memory.buffer.byteLength,
    rss: mem.rss,
    heap: mem.heapUsed,
  };
};

await drive(0, warmup);
const before = await snapshot();
let wasmMax = before.wasm;
const started = performance.now();
await drive(warmup, warmup + events, (i) => {
  if (i % 1000 === 0) {
    wasmMax = Math.max(wasmMax, exports.memory.buffer.byteLength);
  }
});
const seconds = (performance.now() - started) / 1000;
const after = await snapshot();
// The shim's RPC fetch carries AbortSignal.timeout(10 s); each pending timer keeps its request's
// objects alive until it fires. Waiting that long separates this bounded retention from a leak.
await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
const settled = await snapshot();
print(JSON.stringify({
  events,
  warmup,
  wasm_memory_before_bytes: before.wasm,
  wasm_memory_after_bytes: after.wasm,
  wasm_memory_max_bytes: Math.max(wasmMax, after.wasm),
  rss_before_kb: Math.round(before.rss / 1024),
  rss_after_kb: Math.round(after.rss / 1024),
  heap_used_before: before.heap,
  heap_used_after: after.heap,
  settle_ms: SETTLE_MS,
  wasm_memory_settled_bytes: settled.wasm,
  rss_settled_kb: Math.round(settled.rss / 1024),
  heap_used_settled: settled.heap,
  statuses,
  mismatches,
  mismatch_samples: mismatchSamples,
  rpc_calls: rpcCalls,
  rpc_calls_expected: rpcExpected,
  log_lines: logLines,
  requests: warmup + events,
  requests_per_second_incl_generation: Math.round(events / seconds),
}));
