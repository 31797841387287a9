/**
 * Section 2, size and start: the optimised .wasm raw and gzip -9, the JS glue and the inlined
 * module, and cold start — a fresh Deno process importing the shim (instantiate, read env,
 * serve) and answering a first signed request with the REST API stubbed — measured inside the
 * process and as process wall time; the TS baseline function is started the same way.
 */

import { buildEvent, headersFor } from "../../scripts/lib/hms.ts";
import type { BenchContext } from "../lib/context.ts";
import { sizes } from "../lib/context.ts";
import { PKG_DIR, wasmBytes } from "../lib/pkg.ts";
import { lastJson, run } from "../lib/proc.ts";
import { startRpcStub } from "../lib/rpc_stub.ts";
import { rounded, summarize, type Summary } from "../lib/stats.ts";

import { LISTEN_FLAG } from "../../scripts/stack/edge_serve.ts";
import { functionDenoBinary } from "../../scripts/stack/function.ts";
export interface ColdStart {
  runs: number;
  /** From before the import to the first response, inside the process. */
  in_process_ms: Summary;
  /** Import of the function module: compile + instantiate + config + Deno.serve. */
  import_ms: Summary;
  first_request_ms: Summary;
  /** The same request again in the same process: the warm cost, for comparison. */
  second_request_ms: Summary;
  /** Runtime boot before the first line of user code (performance.now() at entry). */
  boot_ms: Summary;
  /** Spawn to exit of the whole process, seen from outside. */
  process_wall_ms: Summary;
}

export interface SizeResult {
  wasm_bytes: number;
  wasm_gzip_bytes: number;
  glue_bytes: number;
  inline_module_bytes: number;
  build_stamp: Record<string, unknown> | null;
  cold_start: ColdStart;
  baseline_cold_start: ColdStart | null;
}

interface Probe {
  status: number;
  answer_status: string | null;
  boot_ms: number;
  import_ms: number;
  first_request_ms: number;
  second_request_ms: number;
  in_process_ms: number;
}

const SECRET = "bench-cold-start-secret-7a41";

function freePort(from: number, to: number): number {
  for (let port = from; port <= to; port++) {
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch {
      // Taken; try the next one.
    }
  }
  throw new Error(`no free port in ${from}-${to}`);
}

/** Bytes of `gzip -9 -n` output, the figure scripts/build.sh stamps too. */
async function gzipSize(bytes: Uint8Array): Promise<number> {
  const child = new Deno.Command("gzip", {
    args: ["-9", "-n", "-c"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(bytes);
  await writer.close();
  const out = await child.output();
  if (out.code !== 0) {
    throw new Error(`gzip failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return out.stdout.length;
}

async function fileSize(name: string): Promise<number> {
  return (await Deno.stat(new URL(name, PKG_DIR))).size;
}

async function coldStartOnce(
  ctx: BenchContext,
  impl: "wasm" | "baseline",
  stubUrl: string,
): Promise<Probe & { wall: number }> {
  const event = buildEvent("peer.join.success", { at: new Date() });
  const headers = await headersFor(event.body, {
    secret: SECRET,
    auth: "signature",
  });
  const port = freePort(54620, 54699);
  const env: Record<string, string> = {
    HMS_WEBHOOK_SECRET: SECRET,
    SUPABASE_URL: stubUrl,
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: "sb_secret_bench" }),
    BENCH_BODY: event.body,
    BENCH_SIGNATURE: headers["x-100ms-signature"],
    NO_COLOR: "1",
  };
  for (const name of ["PATH", "HOME", "DENO_DIR", "TMPDIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  const result = await run(functionDenoBinary(ctx.root), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      // Only for the probe's computed dynamic import (the shim itself reads no files).
      "--allow-read",
      "bench/probes/cold_start.ts",
      `${LISTEN_FLAG}127.0.0.1:${port}`,
      ...(impl === "baseline" ? ["--impl=baseline"] : []),
    ],
    cwd: ctx.root,
    env,
    timeoutMs: 60_000,
  });
  const probe = lastJson<Probe>(result, `cold start (${impl})`);
  if (
    result.code !== 0 || probe.status !== 200 ||
    probe.answer_status !== "applied"
  ) {
    throw new Error(
      `cold start (${impl}) answered ${probe.status} ${probe.answer_status}\n${
        result.stderr.slice(-2000)
      }`,
    );
  }
  return { ...probe, wall: result.wallMs };
}

function summarise(probes: (Probe & { wall: number })[]): ColdStart {
  const pick = (f: (p: Probe & { wall: number }) => number) =>
    rounded(summarize(probes.map(f)), 2);
  return {
    runs: probes.length,
    in_process_ms: pick((p) => p.in_process_ms),
    import_ms: pick((p) => p.import_ms),
    first_request_ms: pick((p) => p.first_request_ms),
    second_request_ms: pick((p) => p.second_request_ms),
    boot_ms: pick((p) => p.boot_ms),
    process_wall_ms: pick((p) => p.wall),
  };
}

export async function runSize(ctx: BenchContext): Promise<SizeResult> {
  const bytes = await wasmBytes();
  const stamp = await Deno.readTextFile(new URL("BUILD_STAMP.json", PKG_DIR))
    .then((t) => JSON.parse(t) as Record<string, unknown>)
    .catch(() => null);
  const stub = startRpcStub(54600, 54619);
  try {
    const runs = sizes(ctx.quick).coldStartRuns;
    ctx.log(
      `size: cold starts (${runs} each for the shim and the TS baseline, alternating)`,
    );
    // One untimed start each fills Deno's module and code caches, as a deployed bundle would be.
    await coldStartOnce(ctx, "wasm", stub.url);
    const baselineWorks = await coldStartOnce(ctx, "baseline", stub.url).then(
      () => true,
    )
      .catch((error) => {
        ctx.log(`size: TS baseline cold start skipped: ${error.message}`);
        return false;
      });
    const wasm: (Probe & { wall: number })[] = [];
    const baseline: (Probe & { wall: number })[] = [];
    for (let i = 0; i < runs; i++) {
      wasm.push(await coldStartOnce(ctx, "wasm", stub.url));
      if (baselineWorks) {
        baseline.push(await coldStartOnce(ctx, "baseline", stub.url));
      }
    }
    return {
      wasm_bytes: bytes.length,
      wasm_gzip_bytes: await gzipSize(bytes),
      glue_bytes: await fileSize("hms_webhook.js"),
      inline_module_bytes: await fileSize("hms_webhook_wasm.js"),
      build_stamp: stamp,
      cold_start: summarise(wasm),
      baseline_cold_start: baselineWorks ? summarise(baseline) : null,
    };
  } finally {
    await stub.stop();
  }
}
