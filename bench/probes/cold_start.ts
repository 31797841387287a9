/**
 * One cold start, measured from inside a fresh Deno process: import the function module (the
 * real shim, or with `--impl baseline` the TS baseline function), which instantiates and starts
 * serving on the `--edge-listen=HOST:PORT` address (the runtime owns the listener, as in
 * scripts/stack/edge_serve.ts), then POST one signed event (BENCH_BODY / BENCH_SIGNATURE) to it;
 * its RPC goes to the stub at SUPABASE_URL. Then the same request once more, to show what part
 * of the first one was one-time warm-up. Prints one JSON line, then exits.
 *
 * Runs on the edge runtime's Deno with --allow-net --allow-env, as the local stack runs the
 * function, plus --allow-read
 * because a computed dynamic import needs it. The import is computed on purpose: a literal one
 * would be loaded with the module graph before the first line runs, hiding its cost.
 */

import { LISTEN_FLAG } from "../../scripts/stack/edge_serve.ts";

// Taken before anything of the function is loaded: the time the runtime needed to boot.
const boot = performance.now();

const impl = Deno.args.includes("--impl=baseline") ? "baseline" : "wasm";
const entry = impl === "baseline"
  ? new URL("../baseline_function.ts", import.meta.url)
  : new URL("../../supabase/functions/hms-webhook/index.ts", import.meta.url);
const address = Deno.args.find((arg) => arg.startsWith(LISTEN_FLAG))?.slice(
  LISTEN_FLAG.length,
) ?? "";
const body = Deno.env.get("BENCH_BODY") ?? "";
const signature = Deno.env.get("BENCH_SIGNATURE") ?? "";

// The same request both times: the first pays for what is one-time, the second shows the rest.
const url = `http://${address}/`;
const send = () =>
  fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-100ms-signature": signature,
    },
    body,
  });

const t0 = performance.now();
await import(entry.href);
const imported = performance.now();
const res = await send();
const answer = await res.text();
const done = performance.now();
await (await send()).text();
const second = performance.now() - done;

console.log(JSON.stringify({
  impl,
  status: res.status,
  answer_status: (() => {
    try {
      return JSON.parse(answer).status ?? null;
    } catch {
      return null;
    }
  })(),
  boot_ms: boot,
  import_ms: imported - t0,
  first_request_ms: done - imported,
  second_request_ms: second,
  in_process_ms: done - t0,
  since_time_origin_ms: done,
}));
Deno.exit(0);
