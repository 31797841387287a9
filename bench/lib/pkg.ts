/**
 * Loads the committed Wasm package (supabase/functions/hms-webhook/pkg/) the way the shim does:
 * the glue module plus the base64-inlined bytes, instantiated synchronously once.
 */

import { fromFileUrl } from "../../scripts/lib/file_url.ts";

export const PKG_DIR = new URL(
  "../../supabase/functions/hms-webhook/pkg/",
  import.meta.url,
);

type Glue =
  typeof import("../../supabase/functions/hms-webhook/pkg/hms_webhook.js");
type InitOutput = ReturnType<Glue["initSync"]>;

export interface LoadedPackage {
  glue: Glue;
  /** The instance's exports, including `memory`. */
  exports: InitOutput;
  /** The optimised .wasm bytes that were instantiated. */
  wasmBytes: Uint8Array<ArrayBuffer>;
}

/** Base64 to bytes (the probes run on Deno 2.1 too, which has no `Uint8Array.fromBase64`; the
 * speed of this decode is not measured: the cold-start probe runs the shim's own). */
function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** The optimised .wasm bytes, decoded from the inlined module. */
export async function wasmBytes(): Promise<Uint8Array<ArrayBuffer>> {
  const inline = await import(new URL("hms_webhook_wasm.js", PKG_DIR).href) as {
    wasmBase64: string;
  };
  return fromBase64(inline.wasmBase64);
}

/** Imports the glue and instantiates the module (dynamic, so a missing build fails late). */
export async function loadPackage(): Promise<LoadedPackage> {
  const glue = await import(new URL("hms_webhook.js", PKG_DIR).href) as Glue;
  const bytes = await wasmBytes();
  return { glue, exports: glue.initSync({ module: bytes }), wasmBytes: bytes };
}

/** The bench build (scripts/build.sh --bench): the deployed module plus `check_event`. */
export const BENCH_PKG_DIR = new URL(
  "../../target/bench-pkg/",
  import.meta.url,
);

/** The handler of the bench build: `begin` without I/O (read its answer with `readDecision`). */
export interface BenchHandler {
  check_event(
    signature: string | undefined,
    secretHeader: string | undefined,
    body: Uint8Array,
    nowMs: number,
  ): string;
}

export interface BenchPackage {
  glue: {
    WebhookHandler: {
      new (env: Record<string, string>): BenchHandler;
      /** The core's contract tables (see `BenchContract`). */
      contract(): BenchContract;
    };
  };
}

/** Builds the bench module when its sources changed (a no-op otherwise) and instantiates it. */
export async function loadBenchPackage(): Promise<BenchPackage> {
  const root = fromFileUrl(new URL("../../", import.meta.url));
  const build = await new Deno.Command("bash", {
    args: [`${root}scripts/build.sh`, "--bench"],
    stdout: "null", // probes print their one JSON line on stdout
    stderr: "inherit",
  }).output();
  if (!build.success) throw new Error("scripts/build.sh --bench failed");
  const glue = await import(new URL("hms_webhook.js", BENCH_PKG_DIR).href);
  const inline = await import(
    new URL("hms_webhook_wasm.js", BENCH_PKG_DIR).href
  ) as { wasmBase64: string };
  glue.initSync({ module: fromBase64(inline.wasmBase64) });
  return { glue };
}

/** `WebhookHandler.contract()`: design §5's type -> action table and §3's default roles. */
export interface BenchContract {
  actions: Record<string, string>;
  speaker_roles: string;
  ignored_roles: string;
}

/** What `WebhookHandler.check_event` decided, read from its `call\n…` / `<status>\n…` answer. */
export type CoreDecision =
  | { step: "call"; args: string }
  | { step: "respond"; status: number; body: string };

/** Reads a `check_event` answer. */
export function readDecision(answer: string): CoreDecision {
  const newline = answer.indexOf("\n");
  const head = answer.slice(0, newline);
  const rest = answer.slice(newline + 1);
  return head === "call"
    ? { step: "call", args: rest }
    : { step: "respond", status: Number(head), body: rest };
}

/**
 * The two credential header values `check_event` takes, picked from request headers by the
 * names the core reads (`x-100ms-signature` and the default secret header, `x-webhook-secret`).
 */
export function credentialHeaders(
  headers: Record<string, string>,
): [string | undefined, string | undefined] {
  const get = (name: string) =>
    Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1];
  return [get("x-100ms-signature"), get("x-webhook-secret")];
}
