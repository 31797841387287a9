/**
 * The TypeScript baseline as an Edge Function: `bench/baseline.ts` for verify/parse/plan plus
 * supabase-js `.rpc("hms_apply_event")` for the write — what a developer would deploy instead of
 * the Rust/Wasm function. Same env, responses and one-log-line-per-request as the real shim, so
 * `npm run bench` can serve both the same way and compare them end to end.
 */

import { createClient } from "@supabase/supabase-js";
import { type Bytes, checkEvent, loadConfig } from "./baseline.ts";

const env = Deno.env.toObject();
const config = await loadConfig(env);
const supabase = createClient(
  env.SUPABASE_URL ?? "http://unconfigured",
  config.serviceKey || "-",
  {
    auth: {
      persistSession: false,
      autoRefreshToken: false,
      detectSessionInUrl: false,
    },
  },
);

function reply(
  status: number,
  body: Record<string, unknown>,
  started: number,
): Response {
  console.log(JSON.stringify({
    level: "info",
    msg: "webhook",
    event_id: body.event_id ?? null,
    type: body.type ?? null,
    outcome: status === 200 ? body.status : status < 500 ? "rejected" : "error",
    status,
    code: body.code ?? null,
    ms: Math.round((performance.now() - started) * 10) / 10,
  }));
  return Response.json(body, { status });
}

async function readCapped(req: Request, max: number): Promise<Bytes | null> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > max) return null;
  const body = new Uint8Array(await req.arrayBuffer());
  return body.length > max ? null : body;
}

async function handle(req: Request): Promise<Response> {
  const started = performance.now();
  if (req.method === "OPTIONS") {
    return new Response(null, {
      status: 204,
      headers: { allow: "POST, OPTIONS" },
    });
  }
  const body = req.method === "POST"
    ? await readCapped(req, config.maxBodyBytes)
    : new Uint8Array();
  if (body === null) {
    return reply(413, {
      status: "error",
      code: "payload_too_large",
      message: "body is too large",
    }, started);
  }
  const decision = await checkEvent(
    config,
    req.method,
    req.headers,
    body,
    Date.now(),
  );
  if (decision.kind === "respond") {
    return reply(decision.status, decision.body, started);
  }
  const { args } = decision;
  const { data, error } = await supabase.rpc("hms_apply_event", args);
  const result = data as {
    status?: string;
    reason?: string | null;
    room?: unknown;
  } | null;
  if (error !== null || result === null || typeof result.status !== "string") {
    return reply(503, {
      status: "error",
      code: "upstream_unavailable",
      message: "the database could not be reached; retry later",
    }, started);
  }
  const base = {
    status: result.status,
    event_id: args.p_event_id,
    type: args.p_event_type,
  };
  return reply(
    200,
    result.status === "ignored"
      ? { ...base, reason: result.reason }
      : { ...base, room: result.room },
    started,
  );
}

Deno.serve(async (req) => {
  try {
    return await handle(req);
  } catch {
    return Response.json(
      { status: "error", code: "internal", message: "internal error" },
      { status: 500 },
    );
  }
});
