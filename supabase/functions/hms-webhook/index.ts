/**
 * hms-webhook Edge Function: a thin Deno shim around the Rust core (compiled to Wasm).
 *
 * Once per isolate: decode the inlined Wasm, instantiate it and build the handler from the
 * environment. Per request: hand the `Request` to the core. The Wasm is a base64 JS module,
 * so it is part of the module graph (no `static_files`, no fetch of a file, no --allow-read).
 */
import { initSync, WebhookHandler } from "./pkg/hms_webhook.js";
import { wasmBase64 } from "./pkg/hms_webhook_wasm.js";

/**
 * The one answer that never depends on the core (boot failed, or the core threw): the core's own
 * 500 `internal` body, byte for byte, and its headers (a Rust test in src/reply.rs checks both).
 */
const INTERNAL_BODY =
  `{"status":"error","code":"internal","message":"internal error"}`;

function internalError(): Response {
  return new Response(INTERNAL_BODY, {
    status: 500,
    headers: {
      "content-type": "application/json",
      "cache-control": "no-store",
    },
  });
}

// `BufferSource` rather than `Uint8Array`: the type is generic only from TypeScript 5.7 on, and
// the edge runtime's Deno 2.1 checks with 5.6.
function decodeBase64(text: string): BufferSource {
  // Native decoding (newer runtimes) takes ~0.05 ms against a few ms for the atob loop.
  const native = (Uint8Array as unknown as {
    fromBase64?: (text: string) => BufferSource;
  }).fromBase64;
  if (native) return native(text);
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

let handler: WebhookHandler | null = null;
try {
  initSync({ module: decodeBase64(wasmBase64) });
  // Only the variables the core reads (it names them); it validates them and answers 500
  // `misconfigured` itself if needed.
  const env: Record<string, string> = {};
  for (const name of WebhookHandler.variables()) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  handler = new WebhookHandler(env);
} catch (error) {
  // Boot must not crash the worker: log the cause, answer 500 until the isolate is replaced.
  console.error(JSON.stringify({
    level: "error",
    msg: "webhook boot failed",
    error: String(error),
  }));
}

Deno.serve(async (request: Request): Promise<Response> => {
  if (handler === null) return internalError();
  try {
    return await handler.handle(request);
  } catch (error) {
    console.error(JSON.stringify({
      level: "error",
      msg: "webhook handler threw",
      error: String(error),
    }));
    return internalError();
  }
});
